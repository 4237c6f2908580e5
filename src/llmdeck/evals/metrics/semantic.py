"""Embedding similarity: cosine of output and expected answer, embedded through the gateway."""

from __future__ import annotations

from llmdeck.core.errors import ContextWindowExceeded
from llmdeck.evals.calls import DEFAULT_EMBEDDER, cosine, embed
from llmdeck.evals.metrics.base import Sample, Score


def _too_long(model: str, what: str) -> Score:
    """No score for texts longer than the embedding model reads: the similarity of their
    openings alone could pass an answer that goes wrong further on."""
    return Score(
        None,
        f"{what} longer than {model} reads, and comparing only the openings could pass a "
        "wrong answer. Use a judge metric, or an embedding model that reads more.",
    )


class EmbeddingSimilarity:
    name = "embedding_similarity"
    uses_model = True

    def __init__(self, model: str = DEFAULT_EMBEDDER):
        self.model = model

    async def score(self, sample: Sample) -> Score:
        if not sample.output.strip() or not sample.expected_text.strip():
            return Score(0.0, "The output or the expected answer is empty.")
        try:
            a, b = await embed(sample, self.model, [sample.output, sample.expected_text])
        except ContextWindowExceeded:
            return _too_long(self.model, "The output or the expected answer is")
        value = max(0.0, cosine(a, b))
        return Score(value, f"Cosine similarity {value:.3f} of the {self.model} embeddings.")
