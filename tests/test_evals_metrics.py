"""Each deterministic metric on known cases, and the plug-in registry that serves them."""

from __future__ import annotations

import asyncio

import pytest

from llmdeck.core.errors import InvalidRequest
from llmdeck.core.registry import load_plugins
from llmdeck.evals.judges import PairwiseVerdict, pairwise_score, parse_score
from llmdeck.evals.metrics import Sample, Score, build, build_all
from llmdeck.evals.review import cohen_kappa, spearman


def score(spec, output: str, expected=None, **input) -> Score:
    _, metric = build(spec)
    return asyncio.run(metric.score(Sample(input=input, output=output, expected=expected)))


@pytest.mark.parametrize(
    ("spec", "output", "expected", "value"),
    [
        ("exact_match", "  Paris ", "paris", 1.0),
        ("exact_match", "Paris, France", "Paris", 0.0),
        ({"name": "exact_match", "case_sensitive": True}, "paris", "Paris", 0.0),
        ("contains", "The capital is Paris.", "paris", 1.0),
        ("contains", "The capital is Lyon.", "Paris", 0.0),
        ({"name": "contains", "value": ["a", "zz"]}, "abc", None, 0.5),
        ({"name": "regex", "pattern": r"\d{4}-\d{2}-\d{2}"}, "Due 2026-11-23.", None, 1.0),
        ({"name": "regex", "pattern": r"^\d+$", "full": True}, "12a", None, 0.0),
        ("json_valid", '{"a": 1}', None, 1.0),
        ("json_valid", "```json\n[1, 2]\n```", None, 1.0),
        ("json_valid", "{'a': 1}", None, 0.0),
        ("numeric", "It is 3.14159", "3.14", 0.0),
        ({"name": "numeric", "tolerance": 0.01}, "It is 3.14159", "3.14", 1.0),
        ({"name": "numeric", "tolerance": 0.1, "relative": True}, "1,050 km", 1000, 1.0),
        ("numeric", "no number", "7", 0.0),
        ("rouge_l", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("rouge_l", "dogs bark", "the cat sat", 0.0),
        ("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("chrf", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ],
)
def test_deterministic_metrics_on_known_cases(spec, output, expected, value) -> None:
    result = score(spec, output, expected)
    assert result.value == pytest.approx(value, abs=1e-6), result.explanation
    assert result.explanation  # every score says why


def test_partial_overlap_scores_in_between() -> None:
    rouge = score("rouge_l", "the cat sat", "the cat sat on the mat")
    assert rouge.value == pytest.approx(2 * 1 * 0.5 / 1.5)  # precision 1, recall 0.5
    assert "recall 0.50" in rouge.explanation
    bleu = score("bleu", "the cat sat on a mat", "the cat sat on the mat")
    chrf = score("chrf", "the cat sat on a mat", "the cat sat on the mat")
    assert 0 < bleu.value < 1 and 0.5 < chrf.value < 1


def test_json_schema_explains_the_violation() -> None:
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}},
        "required": ["age"],
    }
    ok = score({"name": "json_schema", "schema": schema}, '{"age": 3}')
    bad = score({"name": "json_schema", "schema": schema}, '{"age": "three"}')
    missing = score("json_schema", "{}", expected=schema)
    assert ok.value == 1.0 and bad.value == 0.0 and missing.value == 0.0
    assert "age" in bad.explanation and "'three' is not of type 'integer'" in bad.explanation
    assert "required" in missing.explanation


def test_unknown_metrics_and_parameters_are_refused() -> None:
    with pytest.raises(Exception, match="No evaluator named 'bogus'"):
        build("bogus")
    with pytest.raises(InvalidRequest, match="takes"):
        build({"name": "exact_match", "tolerance": 1})
    with pytest.raises(InvalidRequest, match="share a name"):
        build_all(["exact_match", {"name": "exact_match", "case_sensitive": True}])
    assert [n for n, _ in build_all(["exact_match", {"name": "exact_match", "as": "em2"}])] == [
        "exact_match",
        "em2",
    ]


def test_custom_metric_plugin_registers_like_the_builtins() -> None:
    class Shouting:
        name, uses_model = "shouting", False

        async def score(self, sample):
            loud = sample.output.isupper()
            return Score(float(loud), "all capitals" if loud else "not all capitals")

    hub = load_plugins(extra=[lambda hub: hub.evaluators.register("shouting", Shouting)])
    assert "exact_match" in hub.evaluators  # built-ins come from the entry point
    metric = hub.evaluators.get("shouting")()
    assert asyncio.run(metric.score(Sample(input={}, output="HI"))).value == 1.0


def test_judge_parsing_pairwise_and_agreement_statistics() -> None:
    assert parse_score("Score: 4\nReasoning: fine", 1, 5) == 4
    assert parse_score("I'd give it 9, no, 3", 1, 5) == 3
    assert parse_score("no idea", 1, 5) is None
    assert pairwise_score(PairwiseVerdict("A", "x", "1", "2")).value == 1.0
    assert pairwise_score(PairwiseVerdict("tie", "x", "1", "1")).value == 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    assert spearman([0.1, 0.5, 0.9], [0.0, 0.4, 1.0]) == pytest.approx(1.0)
    assert spearman([0.1, 0.1, 0.1], [0.0, 0.4, 1.0]) is None


def test_demo_seeds_a_prompt_and_a_dataset_once(db) -> None:
    from llmdeck.evals import datasets
    from llmdeck.evals import demo as evals_demo
    from llmdeck.identity import service as identity
    from llmdeck.prompts import service as prompts

    with db.session() as session:
        project = identity.ensure_project(session, name="demo")
        evals_demo.seed(session, project)
        evals_demo.seed(session, project)  # idempotent: starting twice adds nothing
        prompt, version = prompts.resolve(
            session, project_id=project.id, name=evals_demo.PROMPT, label="production"
        )
        assert version.version == 1 and version.variables == ["question"]
        dataset = datasets.get_by_name(session, project_id=project.id, name=evals_demo.DATASET)
        assert dataset.version == 1 and datasets.count(session, dataset=dataset) == 3
