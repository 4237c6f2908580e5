"""Deterministic metrics on text: match, containment, patterns, JSON, numbers, overlap."""

from __future__ import annotations

import json
import re
from typing import Any

from llmdeck.core.errors import InvalidRequest, sentence
from llmdeck.evals.metrics.base import Sample, Score


def _norm(text: str, *, case_sensitive: bool, strip: bool = True) -> str:
    text = " ".join(text.split()) if strip else text
    return text if case_sensitive else text.casefold()


def exact_match(sample: Sample, *, case_sensitive: bool = False) -> Score:
    got = _norm(sample.output, case_sensitive=case_sensitive)
    want = _norm(sample.expected_text, case_sensitive=case_sensitive)
    if got == want:
        return Score(1.0, "The output equals the expected answer (whitespace normalised).")
    return Score(0.0, f"The output {_short(sample.output)} differs from {_short(want)}.")


def contains(
    sample: Sample, *, value: str | list[str] | None = None, case_sensitive: bool = False
) -> Score:
    wanted = value if value is not None else sample.expected
    needles = wanted if isinstance(wanted, list) else [str(wanted or "")]
    hay = _norm(sample.output, case_sensitive=case_sensitive)
    missing = [n for n in needles if _norm(str(n), case_sensitive=case_sensitive) not in hay]
    if not missing:
        return Score(1.0, f"The output contains {', '.join(map(repr, needles))}.")
    return Score(
        (len(needles) - len(missing)) / len(needles),
        f"The output lacks {', '.join(map(repr, missing))}.",
    )


def regex(sample: Sample, *, pattern: str | None = None, full: bool = False) -> Score:
    source = pattern if pattern is not None else sample.expected_text
    try:
        compiled = re.compile(source)
    except re.error as exc:
        return Score(
            None, f"The pattern {source!r} is not a valid regular expression: {sentence(exc)}"
        )
    match = compiled.fullmatch(sample.output.strip()) if full else compiled.search(sample.output)
    if match:
        return Score(1.0, f"The pattern {source!r} matched {match.group(0)[:80]!r}.")
    return Score(0.0, f"The pattern {source!r} did not match the output.")


def _parse_json(text: str) -> tuple[Any, str | None]:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        return json.loads(body), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


def json_valid(sample: Sample) -> Score:
    _, error = _parse_json(sample.output)
    if error:
        return Score(0.0, f"The output is {error}.")
    return Score(1.0, "The output is valid JSON.")


def json_schema(sample: Sample, *, schema: dict[str, Any] | None = None) -> Score:
    import jsonschema

    schema = schema if schema is not None else sample.expected
    if isinstance(schema, str):
        schema, error = _parse_json(schema)
        if error:
            return Score(None, f"The schema is {error}.")
    if not isinstance(schema, dict):
        return Score(None, "No JSON schema was given (metric parameter `schema` or `expected`).")
    value, error = _parse_json(sample.output)
    if error:
        return Score(0.0, f"The output is {error}.")
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if not problems:
        return Score(1.0, "The output is valid JSON and matches the schema.")
    first = problems[0]
    where = "/".join(map(str, first.path)) or "(root)"
    return Score(0.0, f"Schema violation at {where}: {first.message} ({len(problems)} in all).")


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group(0).replace(",", "")) if match else None


def numeric(sample: Sample, *, tolerance: float = 0.0, relative: bool = False) -> Score:
    want = (
        sample.expected
        if isinstance(sample.expected, (int, float))
        else _first_number(sample.expected_text)
    )
    got = _first_number(sample.output)
    if want is None:
        return Score(None, "The expected answer holds no number.")
    if got is None:
        return Score(0.0, "The output holds no number.")
    allowed = tolerance * abs(want) if relative else tolerance
    if abs(got - want) <= allowed:
        return Score(1.0, f"{got:g} is within {allowed:g} of {want:g}.")
    return Score(0.0, f"{got:g} is {abs(got - want):g} away from {want:g} (allowed {allowed:g}).")


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def rouge_l(sample: Sample) -> Score:
    ref, hyp = _tokens(sample.expected_text), _tokens(sample.output)
    if not ref or not hyp:
        return Score(0.0, "The output or the expected answer is empty.")
    prev = [0] * (len(hyp) + 1)
    for r in ref:  # longest common subsequence, one row at a time
        row = [0]
        for j, h in enumerate(hyp):
            row.append(prev[j] + 1 if r == h else max(prev[j + 1], row[j]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return Score(0.0, "No words in common with the expected answer.")
    precision, recall = lcs / len(hyp), lcs / len(ref)
    f1 = 2 * precision * recall / (precision + recall)
    return Score(
        f1,
        f"Longest common subsequence {lcs} words: precision {precision:.2f}, recall {recall:.2f}.",
    )


def _references(sample: Sample) -> list[str]:
    expected = sample.expected
    return [str(e) for e in expected] if isinstance(expected, list) else [sample.expected_text]


def bleu(sample: Sample) -> Score:
    import sacrebleu

    result = sacrebleu.sentence_bleu(sample.output, _references(sample))
    return Score(result.score / 100, f"Sentence BLEU {result.score:.1f} ({result}).")


def chrf(sample: Sample) -> Score:
    import sacrebleu

    result = sacrebleu.sentence_chrf(sample.output, _references(sample))
    return Score(result.score / 100, f"chrF {result.score:.1f}: character n-gram F-score.")


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


BUILTINS = {
    "exact_match": exact_match,
    "contains": contains,
    "regex": regex,
    "json_valid": json_valid,
    "json_schema": json_schema,
    "numeric": numeric,
    "rouge_l": rouge_l,
    "bleu": bleu,
    "chrf": chrf,
}


def check_params(name: str, fn, params: dict[str, Any]) -> None:
    import inspect

    allowed = set(inspect.signature(fn).parameters) - {"sample"}
    unknown = set(params) - allowed
    if unknown:
        raise InvalidRequest(
            f"Metric {name!r} takes {', '.join(sorted(allowed)) or 'no parameters'}; "
            f"not {', '.join(sorted(unknown))}.",
            param="metrics",
        )
