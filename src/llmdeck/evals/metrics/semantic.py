"""Embedding similarity: cosine of output and expected answer, embedded through the gateway."""

from __future__ import annotations

from llmdeck.evals.calls import DEFAULT_EMBEDDER, cosine, embed
from llmdeck.evals.metrics.base import Sample, Score


class EmbeddingSimilarity:
    name = "embedding_similarity"
    uses_model = True

    def __init__(self, model: str = DEFAULT_EMBEDDER):
        self.model = model

    async def score(self, sample: Sample) -> Score:
        if not sample.output.strip() or not sample.expected_text.strip():
            return Score(0.0, "The output or the expected answer is empty.")
        a, b = await embed(sample, self.model, [sample.output, sample.expected_text])
        value = max(0.0, cosine(a, b))
        return Score(value, f"Cosine similarity {value:.3f} of the {self.model} embeddings.")
