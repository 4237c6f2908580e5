"""LLM-as-judge: a rubric score with reasoning, and pairwise A/B with positions swapped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmdeck.evals.calls import DEFAULT_JUDGE, chat
from llmdeck.evals.metrics.base import Sample, Score

DEFAULT_RUBRIC = (
    "5: correct, complete and clear. 4: correct with small omissions. 3: partly correct. "
    "2: mostly wrong. 1: wrong or off-topic."
)
JUDGE_SYSTEM = (
    "You are a strict grader. Grade the answer using the rubric. Reply on two lines:\n"
    "Score: <a whole number from {low} to {high}>\nReasoning: <one sentence>"
)


def parse_score(text: str, low: int, high: int) -> int | None:
    """The first whole number in range after 'Score', else the first in range anywhere."""
    match = re.search(r"score\s*[:=]?\s*(\d+)", text, re.I)
    candidates = [match.group(1)] if match else []
    candidates += re.findall(r"\b(\d+)\b", text)
    for c in candidates:
        if low <= int(c) <= high:
            return int(c)
    return None


def _asked(sample: Sample) -> str:
    """What the answer answers: the question, or the conversation when it had several turns."""
    conversation = sample.conversation
    if conversation:
        return f"Conversation:\n{conversation}"
    return f"Question: {sample.question}"


class RubricJudge:
    """Asks a model to grade the output against a rubric; the score is scaled to [0, 1]."""

    name = "llm_judge"
    uses_model = True

    def __init__(
        self,
        rubric: str = DEFAULT_RUBRIC,
        model: str = DEFAULT_JUDGE,
        low: int = 1,
        high: int = 5,
        max_tokens: int = 40,
    ):
        self.rubric, self.model, self.low, self.high = rubric, model, low, high
        self.max_tokens = max_tokens

    async def score(self, sample: Sample) -> Score:
        reference = f"\nReference answer: {sample.expected_text}" if sample.expected else ""
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM.format(low=self.low, high=self.high)},
            {
                "role": "user",
                "content": f"Rubric: {self.rubric}\n{_asked(sample)}{reference}\n"
                f"Answer: {sample.output}\nGrade it.",
            },
        ]
        reply = await chat(sample, self.model, messages, self.max_tokens)
        raw = parse_score(reply, self.low, self.high)
        if raw is None:
            return Score(None, f"The judge ({self.model}) gave no usable score: {reply.strip()!r}.")
        reasoning = re.search(r"reasoning\s*:\s*(.*)", reply, re.I | re.S)
        why = (reasoning.group(1) if reasoning else reply).strip()
        return Score(
            (raw - self.low) / (self.high - self.low),
            f"{raw}/{self.high} from {self.model}: {why[:500]}",
        )


@dataclass
class PairwiseVerdict:
    winner: str  # "A", "B" or "tie"
    explanation: str
    first: str  # what the judge said with A shown first
    second: str  # with B shown first


PAIRWISE_SYSTEM = (
    "Compare two answers to the same question. Reply with exactly one of: 1, 2 or tie, then "
    "a short reason. 1 means the first answer is better, 2 the second."
)


def _pick(reply: str) -> str | None:
    text = reply.strip().lower()
    if text.startswith("tie"):
        return "tie"
    match = re.search(r"\b([12])\b", text)
    return match.group(1) if match else None


async def pairwise(
    sample: Sample, a: str, b: str, *, model: str = DEFAULT_JUDGE, max_tokens: int = 24
) -> PairwiseVerdict:
    """Judge A against B twice, positions swapped; disagreement between orders is a tie."""

    async def ask(first: str, second: str) -> str:
        messages = [
            {"role": "system", "content": PAIRWISE_SYSTEM},
            {
                "role": "user",
                "content": f"{_asked(sample)}\nAnswer 1: {first}\nAnswer 2: {second}",
            },
        ]
        return await chat(sample, model, messages, max_tokens)

    one, two = await ask(a, b), await ask(b, a)
    p1, p2 = _pick(one), _pick(two)
    # Map back to A/B: in the swapped order "1" means B.
    v1 = {"1": "A", "2": "B"}.get(p1 or "", "tie")
    v2 = {"1": "B", "2": "A"}.get(p2 or "", "tie")
    winner = v1 if v1 == v2 else "tie"
    why = f"A first: {one.strip()[:200]!r} -> {v1}; B first: {two.strip()[:200]!r} -> {v2}; " + (
        "consistent." if v1 == v2 else "the orders disagree (position bias), so a tie."
    )
    return PairwiseVerdict(winner=winner, explanation=why, first=one, second=two)


def pairwise_score(verdict: PairwiseVerdict) -> Score:
    value = {"A": 1.0, "B": 0.0, "tie": 0.5}[verdict.winner]
    return Score(value, verdict.explanation)


async def pairwise_experiments(
    runtime,
    principal,
    experiment_a: str,
    experiment_b: str,
    *,
    model: str = DEFAULT_JUDGE,
    limit: int | None = None,
    max_tokens: int = 24,
) -> dict:
    """Judge two experiments' answers item by item (each pair asked in both orders)."""
    from llmdeck.evals import service

    with runtime.db.session() as session:
        a = service.get_or_raise(
            session, project_id=principal.project_id, experiment_id=experiment_a
        )
        b = service.get_or_raise(
            session, project_id=principal.project_id, experiment_id=experiment_b
        )
        experiment_a, experiment_b = a.id, b.id  # the full ids, when given prefixes
        outputs_b = {r.item_id: r.output for r in service.results(session, experiment=b)}
        pairs = [
            (r.item_id, r.output, outputs_b[r.item_id])
            for r in service.results(session, experiment=a)
            if r.output is not None and outputs_b.get(r.item_id) is not None
        ][:limit]
        items = service.items_by_id(session, {p[0] for p in pairs})
    verdicts = []
    for item_id, out_a, out_b in pairs:
        item = items.get(item_id)
        sample = Sample(
            input=item.input if item else {}, output="", runtime=runtime, principal=principal
        )
        verdict = await pairwise(sample, out_a, out_b, model=model, max_tokens=max_tokens)
        verdicts.append(
            {"item_id": item_id, "winner": verdict.winner, "explanation": verdict.explanation}
        )
    n = len(verdicts) or 1
    counts = {w: sum(v["winner"] == w for v in verdicts) for w in ("A", "B", "tie")}
    return {
        "a": experiment_a,
        "b": experiment_b,
        "judge": model,
        "items": len(verdicts),
        "a_wins": counts["A"],
        "b_wins": counts["B"],
        "ties": counts["tie"],
        "a_win_rate": (counts["A"] + 0.5 * counts["tie"]) / n,
        "verdicts": verdicts,
    }
