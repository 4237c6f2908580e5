"""RAG metrics: faithfulness, context precision and recall, answer relevance.

Contexts come from the target (a RAG or chain target records what it retrieved) or from the
item's input (`context` or `contexts`). Each metric can use the bundled embedding model
(`method: embedding`, cheap, continuous) and faithfulness can also ask a judge model
(`method: judge`, one yes/no question per answer sentence).
"""

from __future__ import annotations

import re

from llmdeck.evals.calls import DEFAULT_EMBEDDER, DEFAULT_JUDGE, chat, cosine, embed
from llmdeck.evals.metrics.base import Sample, Score


def contexts_of(sample: Sample) -> list[str]:
    if sample.contexts:
        return list(sample.contexts)
    for key in ("contexts", "context", "knowledge", "documents"):
        value = sample.input.get(key, sample.metadata.get(key))
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, str) and value.strip():
            return [value]
    return []


def sentences(text: str, limit: int = 8) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if len(p.strip()) > 2]
    return parts[:limit]


class Faithfulness:
    """How much of the answer the retrieved context supports (1 = all of it)."""

    name = "faithfulness"
    uses_model = True

    def __init__(
        self,
        method: str = "judge",
        model: str | None = None,
        max_sentences: int = 3,
        threshold: float = 0.6,
    ):
        self.method = method
        self.model = model or (DEFAULT_JUDGE if method == "judge" else DEFAULT_EMBEDDER)
        self.max_sentences, self.threshold = max_sentences, threshold

    async def score(self, sample: Sample) -> Score:
        contexts = contexts_of(sample)
        claims = sentences(sample.output, self.max_sentences)
        if not contexts:
            return Score(None, "No context to check the answer against.")
        if not claims:
            return Score(None, "The answer is empty.")
        if self.method == "embedding":
            return await self._by_embedding(sample, contexts, claims)
        context = "\n".join(contexts)[:3000]
        verdicts = []
        for claim in claims:
            messages = [
                {
                    "role": "system",
                    "content": "Decide if the statement is supported by the context. "
                    "Answer only yes or no.",
                },
                {
                    "role": "user",
                    "content": f"Context: {context}\n\nStatement: {claim}\nSupported?",
                },
            ]
            reply = (await chat(sample, self.model, messages, 3)).strip().lower()
            verdicts.append((claim, reply.startswith("yes") or reply.startswith("y")))
        supported = sum(ok for _, ok in verdicts)
        detail = "; ".join(f"{'✓' if ok else '✗'} {c[:80]!r}" for c, ok in verdicts)
        return Score(
            supported / len(verdicts),
            f"{supported} of {len(verdicts)} answer sentences supported ({self.model}): {detail}",
        )

    async def _by_embedding(self, sample: Sample, contexts: list[str], claims: list[str]) -> Score:
        pieces = [s for c in contexts for s in sentences(c, 50)] or contexts
        # Sentences, rarely longer than the model reads; a run-on one is matched by its start
        # rather than losing the whole score.
        vectors = await embed(sample, self.model, claims + pieces, truncate=True)
        claim_vecs, piece_vecs = vectors[: len(claims)], vectors[len(claims) :]
        best = [max(cosine(c, p) for p in piece_vecs) for c in claim_vecs]
        value = sum(best) / len(best)
        weak = [c[:60] for c, b in zip(claims, best, strict=True) if b < self.threshold]
        return Score(
            max(0.0, value),
            f"Mean best-match similarity {value:.3f} of {len(claims)} answer sentences to the "
            f"context; weakly supported: {weak or 'none'}.",
        )


class ContextPrecision:
    """Average precision of the retrieved contexts, judged relevant by similarity."""

    name = "context_precision"
    uses_model = True

    def __init__(self, model: str = DEFAULT_EMBEDDER, threshold: float = 0.4):
        self.model, self.threshold = model, threshold

    async def score(self, sample: Sample) -> Score:
        contexts = contexts_of(sample)
        if not contexts:
            return Score(None, "No contexts were retrieved.")
        anchor = sample.expected_text or sample.question
        # Whole retrieved chunks may be longer than the model reads: judged by their start,
        # as a knowledge base's vector search ranked them.
        vectors = await embed(sample, self.model, [anchor, *contexts], truncate=True)
        relevant = [cosine(vectors[0], v) >= self.threshold for v in vectors[1:]]
        hits, total = 0, 0.0
        for rank, ok in enumerate(relevant, start=1):
            if ok:
                hits += 1
                total += hits / rank
        value = total / hits if hits else 0.0
        return Score(
            value,
            f"{hits} of {len(contexts)} contexts relevant (similarity ≥ {self.threshold}); "
            f"ranks {[i + 1 for i, ok in enumerate(relevant) if ok]}.",
        )


class ContextRecall:
    """Share of the expected answer's sentences that some retrieved context supports."""

    name = "context_recall"
    uses_model = True

    def __init__(self, model: str = DEFAULT_EMBEDDER, threshold: float = 0.5):
        self.model, self.threshold = model, threshold

    async def score(self, sample: Sample) -> Score:
        contexts = contexts_of(sample)
        wanted = sentences(sample.expected_text, 20)
        if not contexts or not wanted:
            return Score(None, "Needs retrieved contexts and an expected answer.")
        # Whole contexts and their sentences: a short fact matches its sentence best.
        pieces = contexts + [s for c in contexts for s in sentences(c, 50)]
        # A long context embedded by its start loses nothing: its sentences cover the rest.
        vectors = await embed(sample, self.model, wanted + pieces, truncate=True)
        w, c = vectors[: len(wanted)], vectors[len(wanted) :]
        covered = [max(cosine(x, y) for y in c) >= self.threshold for x in w]
        return Score(
            sum(covered) / len(covered),
            f"{sum(covered)} of {len(covered)} expected sentences found in the contexts.",
        )


class AnswerRelevance:
    """How closely the answer addresses the question (embedding similarity)."""

    name = "answer_relevance"
    uses_model = True

    def __init__(self, model: str = DEFAULT_EMBEDDER):
        self.model = model

    async def score(self, sample: Sample) -> Score:
        if not sample.output.strip():
            return Score(0.0, "The answer is empty.")
        # A long answer is judged by its opening, where an answer addresses its question:
        # refusing would leave most long answers of a verbose model without a score.
        a, b = await embed(sample, self.model, [sample.question, sample.output], truncate=True)
        value = max(0.0, cosine(a, b))
        return Score(value, f"Question-answer similarity {value:.3f} ({self.model}).")
