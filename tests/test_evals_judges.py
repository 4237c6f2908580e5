"""Judge and RAG metrics end to end with the bundled models (SmolLM2-135M as judge,
MiniLM for embeddings), in an experiment run through the gateway. Kept tiny: the bundled
chat model makes ~14 tokens/s on this machine."""

from __future__ import annotations

import asyncio

import pytest

from llmdeck.evals import service
from llmdeck.evals.judges import pairwise
from llmdeck.evals.metrics import Sample
from llmdeck.evals.runner import run_experiment
from llmdeck.evals.schemas import ExperimentCreate
from tests.test_evals_experiments import _principal
from tests.test_evals_support import add_model, echo_upstream
from tests.test_gateway_support import running


@pytest.fixture
def echo():
    yield from echo_upstream()


CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889."
ITEMS = [
    {
        "input": {
            "question": "Where is the Eiffel Tower?",
            "answer": "The Eiffel Tower is in Paris.",
            "contexts": [CONTEXT, "Bananas are yellow fruit."],
        },
        "expected": "It is in Paris.",
    },
    {
        "input": {
            "question": "When was the Eiffel Tower completed?",
            "answer": "Bananas grow on trees in Ecuador.",
            "contexts": [CONTEXT],
        },
        "expected": "It was completed in 1889.",
    },
]


def test_judge_and_rag_metrics_with_the_bundled_models(echo) -> None:
    async def scenario():
        # The bundled models share two cores with everything else: allow slow answers.
        async with running(gateway_attempt_timeout=300, gateway_deadline=600) as gw:
            await add_model(gw.client, "echo", echo.url)
            r = await gw.client.post("/api/datasets", json={"name": "rag", "items": ITEMS})
            assert r.status_code == 201
            principal = _principal(gw.runtime.db)
            with gw.runtime.db.session() as session:
                experiment = service.create(
                    session,
                    project_id=principal.project_id,
                    data=ExperimentCreate(
                        dataset="rag",
                        target={
                            "type": "model",
                            "model": "echo",
                            "messages": [{"role": "user", "content": "{{ answer }}"}],
                        },
                        metrics=[
                            {"name": "llm_judge", "max_tokens": 12},
                            {"name": "faithfulness", "max_sentences": 1},
                            {"name": "faithfulness", "method": "embedding", "as": "grounded"},
                            "context_precision",
                            "context_recall",
                            "answer_relevance",
                            "embedding_similarity",
                        ],
                        concurrency=1,
                    ),
                )
            done = await run_experiment(gw.runtime, principal, experiment.id)
            assert done.status == "done", done.error
            with gw.runtime.db.session() as session:
                rows = service.results(session, experiment=done)
            by_answer = {r.output: r.scores for r in rows}
            good = by_answer["The Eiffel Tower is in Paris."]
            bad = by_answer["Bananas grow on trees in Ecuador."]
            for scores in (good, bad):
                for name, value in scores.items():
                    assert value["explanation"], name  # every score explains itself
                assert scores["faithfulness"]["score"] in (0.0, 1.0), scores["faithfulness"]
                assert "smollm2-135m" in scores["faithfulness"]["explanation"]
                judge = scores["llm_judge"]
                assert judge["score"] is None or 0 <= judge["score"] <= 1
            # The embedding metrics tell the grounded answer from the ungrounded one.
            assert good["grounded"]["score"] > bad["grounded"]["score"] + 0.3
            assert good["answer_relevance"]["score"] > bad["answer_relevance"]["score"]
            assert good["embedding_similarity"]["score"] > bad["embedding_similarity"]["score"]
            assert good["context_precision"]["score"] == 1.0
            assert good["context_recall"]["score"] == 1.0  # "It is in Paris." is in the context

            # Pairwise A/B asks twice with positions swapped; order bias becomes a tie.
            sample = Sample(
                input={"question": "Where is the Eiffel Tower?"},
                output="",
                runtime=gw.runtime,
                principal=principal,
            )
            verdict = await pairwise(
                sample, "In Paris.", "In Ecuador, on a banana tree.", max_tokens=4
            )
            assert verdict.winner in ("A", "B", "tie")
            assert "A first" in verdict.explanation and "B first" in verdict.explanation

    asyncio.run(scenario())


def test_bench_stronger_judge_is_a_catalog_model_called_through_the_gateway(upstream) -> None:
    """bench/evals: BENCH_JUDGE_* registers an OpenAI-compatible judge (here the scripted
    upstream, always answering yes) and the faithfulness figure is scored through it."""
    from bench.evals.run import JUDGE_ALIAS, register_judge, score_faithfulness
    from sqlalchemy import select

    from llmdeck.tracing.models import Span

    upstream.default = {"kind": "ok", "text": "Yes."}

    async def scenario():
        async with running() as gw:
            assert register_judge(gw.runtime, env={}) is None  # none configured
            env = {
                "BENCH_JUDGE_BASE_URL": upstream.url,
                "BENCH_JUDGE_MODEL": "strong-judge-1",
                "BENCH_JUDGE_API_KEY": "sk-bench-judge",
            }
            assert register_judge(gw.runtime, env=env) == JUDGE_ALIAS
            assert register_judge(gw.runtime, env=env) == JUDGE_ALIAS  # idempotent
            rows = [
                {
                    "input": {"question": "Where?", "contexts": [CONTEXT]},
                    "answer": answer,
                    "grounded": grounded,
                }
                for answer, grounded in (
                    ("The Eiffel Tower is in Paris.", True),
                    ("The Eiffel Tower is in Rome.", False),
                )
            ]
            got = await score_faithfulness(
                gw.runtime, _principal(gw.runtime.db), rows, method="judge", model=JUDGE_ALIAS
            )
            # A judge that always says yes cannot tell them apart: chance, honestly reported.
            assert got["accuracy"] == 0.5 and got["auroc"] == 0.5
            assert upstream.hits == 2
            assert {r["model"] for r in upstream.requests} == {"strong-judge-1"}
            assert upstream.headers[-1]["authorization"] == "Bearer sk-bench-judge"
            await gw.runtime.gateway.drain()
            gw.runtime.writer.flush()
            with gw.runtime.db.session() as session:
                models = session.scalars(select(Span.model).where(Span.kind == "llm")).all()
            assert models.count(JUDGE_ALIAS) == 2  # traced like any gateway call

    asyncio.run(scenario())
