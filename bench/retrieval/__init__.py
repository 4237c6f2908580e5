"""Retrieval benchmarks: quality on Cranfield, speed against exact search and Chroma."""
