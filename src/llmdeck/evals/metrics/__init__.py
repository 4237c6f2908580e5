"""Metrics: built-ins register through the `llmdeck.plugins` entry point like any plug-in.

A plug-in adds a metric with `hub.evaluators.register(name, factory)`, where
`factory(**params)` returns an object with `name`, `uses_model` and
`async score(sample) -> Score` (see base.py). In configs a metric is a name or
`{name: ..., as: column, **params}`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from llmdeck.core.errors import InvalidRequest, NotFound, sentence
from llmdeck.core.registry import Plugins, plugins
from llmdeck.evals.metrics.base import FunctionMetric, Metric, Sample, Score
from llmdeck.evals.metrics.text import BUILTINS, check_params

__all__ = ["Metric", "Sample", "Score", "build", "build_all", "plugin"]


def _function_factory(name: str, fn):
    def factory(**params: Any) -> FunctionMetric:
        check_params(name, fn, params)
        return FunctionMetric(name, fn, **params)

    return factory


def plugin(hub: Plugins) -> None:
    """Register the built-in metrics."""
    from llmdeck.evals.judges import RubricJudge
    from llmdeck.evals.metrics.rag import (
        AnswerRelevance,
        ContextPrecision,
        ContextRecall,
        Faithfulness,
    )
    from llmdeck.evals.metrics.semantic import EmbeddingSimilarity

    for name, fn in BUILTINS.items():
        hub.evaluators.register(name, _function_factory(name, fn))
    for cls in (
        EmbeddingSimilarity,
        RubricJudge,
        Faithfulness,
        ContextPrecision,
        ContextRecall,
        AnswerRelevance,
    ):
        hub.evaluators.register(cls.name, partial(_construct, cls))


def _construct(cls, **params: Any):
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidRequest(f"Metric {cls.name!r}: {sentence(exc)}", param="metrics") from None


def spec_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and spec.get("name"):
        return str(spec.get("as") or spec["name"])
    raise InvalidRequest(f"A metric is a name or a mapping with `name`, not {spec!r}.")


def build(spec: Any) -> tuple[str, Metric]:
    """(column name, metric) from a config entry."""
    if isinstance(spec, str):
        name, params = spec, {}
    else:
        spec_name(spec)
        params = {k: v for k, v in spec.items() if k not in ("name", "as")}
        name = spec["name"]
    try:
        factory = plugins().evaluators.get(name)
    except NotFound as exc:  # a bad config is the caller's mistake: 400, not 404
        raise InvalidRequest(exc.message, param="metrics") from None
    return spec_name(spec), factory(**params)


def build_all(specs: list[Any]) -> list[tuple[str, Metric]]:
    built = [build(s) for s in specs]
    names = [n for n, _ in built]
    if len(set(names)) != len(names):
        raise InvalidRequest("Two metrics share a name; give one an `as:`.", param="metrics")
    return built
