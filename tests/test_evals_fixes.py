"""QA fixes in evaluations and prompts: the judge's question, experiment id prefixes,
review queues made with their experiment, chains checked when pushed, prompt authors."""

from __future__ import annotations

import asyncio

from llmdeck.evals import service
from llmdeck.evals.metrics import Sample
from llmdeck.evals.runner import run_experiment
from llmdeck.evals.schemas import ExperimentCreate
from tests.test_evals_experiments import _principal
from tests.test_evals_support import add_model
from tests.test_gateway_support import running


def _judge_asks(upstream) -> list[str]:
    return [
        r["messages"][-1]["content"]
        for r in upstream.requests
        if "Rubric:" in str(r.get("messages", [{}])[-1].get("content"))
    ]


def test_judge_of_a_prompt_target_sees_the_rendered_prompt(upstream) -> None:
    upstream.default = {"kind": "ok", "text": "Score: 4\nReasoning: fine."}

    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "scripted", upstream.url)
            r = await gw.client.post(
                "/api/prompts/greeter/versions",
                json={
                    "messages": [
                        {"role": "system", "content": "You are polite."},
                        {"role": "user", "content": "Greet {{name}} from {{city}}."},
                    ],
                    "model": "scripted",
                    "labels": ["production"],
                },
            )
            assert r.status_code == 201, r.text
            items = [{"input": {"name": "Cy, Jr", "city": "Paris"}, "expected": "Hello Cy"}]
            r = await gw.client.post("/api/datasets", json={"name": "greet", "items": items})
            assert r.status_code == 201, r.text
            principal = _principal(gw.runtime.db)
            with gw.runtime.db.session() as session:
                experiment = service.create(
                    session,
                    project_id=principal.project_id,
                    data=ExperimentCreate(
                        dataset="greet",
                        target={
                            "type": "prompt",
                            "prompt": "greeter@production",
                            "params": {"max_tokens": 8},
                        },
                        metrics=[{"name": "llm_judge", "model": "scripted", "max_tokens": 8}],
                    ),
                )
            done = await run_experiment(gw.runtime, principal, experiment.id)
            assert done.status == "done", done.error
            with gw.runtime.db.session() as session:
                (row,) = service.results(session, experiment=done)
            assert row.scores["llm_judge"]["score"] == 0.75
            (asked,) = _judge_asks(upstream)
            assert "Question: Greet Cy, Jr from Paris." in asked
            assert "Cy, Jr Paris" not in asked
            assert "Reference answer: Hello Cy" in asked

    asyncio.run(scenario())


def test_question_is_what_was_asked() -> None:
    rendered = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is {{x}}?"},
    ]
    # A prompt target's rendered messages win over the variables.
    s = Sample(input={"question": "var"}, output="", messages=rendered)
    assert s.question == "Where is {{x}}?" and s.conversation is None
    # A model target: the item's messages, else its question variable, as before.
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Where is Paris?"}]},
    ]
    s = Sample(input={"messages": chat}, output="")
    assert s.question == "Where is Paris?"
    assert s.conversation == "user: Hi\nassistant: Hello\nuser: Where is Paris?"
    assert Sample(input={"question": "Why?", "n": 1}, output="").question == "Why?"
