"""Knowledge bases: documents, chunking, embeddings, indexes, hybrid retrieval, answers."""
