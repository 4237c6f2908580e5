"""Datasets and experiments on both databases: versions, CSV/JSONL round trips, items from
traces, runs through the gateway against a scripted upstream, resume after interruption,
comparison, and expert review with agreement."""

from __future__ import annotations

import asyncio

import pytest

from llmdeck.core.errors import InvalidRequest
from llmdeck.evals import dataset_files, datasets, service
from llmdeck.evals.runner import run_experiment
from llmdeck.evals.schemas import ExperimentCreate
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from tests.test_evals_support import add_model, echo_upstream
from tests.test_gateway_support import running


@pytest.fixture
def echo():
    yield from echo_upstream()


def test_dataset_versions_and_csv_jsonl_round_trip(db) -> None:
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default").id
        jsonl = (
            '{"input": {"question": "2+2?"}, "expected": "4", "metadata": {"topic": "math"}}\n'
            '{"question": "Capital of France?", "expected": "Paris"}\n'
        )
        ds = datasets.create(
            session, project_id=project, name="qa", items=dataset_files.parse(jsonl, "jsonl")
        )
        assert ds.version == 1
        first = datasets.items(session, dataset=ds)
        assert [i.input for i in first] == [
            {"question": "2+2?"},
            {"question": "Capital of France?"},
        ]
        assert first[0].meta == {"topic": "math"}
        csv_text = (
            'question,expected,metadata\n"Largest planet?",Jupiter,"{""topic"": ""space""}"\n'
        )
        datasets.change(
            session, dataset=ds, add=dataset_files.parse(csv_text, "csv"), remove=[first[0].id]
        )
        assert ds.version == 2
        now = datasets.items(session, dataset=ds)
        assert [i.expected for i in now] == ["Paris", "Jupiter"]
        assert now[1].meta == {"topic": "space"}
        # Old versions stay as they were.
        assert [i.expected for i in datasets.items(session, dataset=ds, version=1)] == [
            "4",
            "Paris",
        ]
        # Exports parse back to the same items.
        for fmt in ("csv", "jsonl"):
            again = dataset_files.parse(dataset_files.dump(now, fmt), fmt)
            assert [(a.input, a.expected) for a in again] == [(i.input, i.expected) for i in now]
        assert datasets.to_public(session, ds).item_count == 2


@pytest.mark.parametrize(
    ("bad_line", "says"),
    [("c,d,e", "Line 3 has 3 values but the header has 2"), ("c", "Line 3 has 1 value but")],
)
def test_a_csv_row_with_the_wrong_number_of_values_refuses_the_import(
    db, bad_line: str, says: str
) -> None:
    text = f"question,expected\na,b\n{bad_line}\ne,f\n"
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default").id
        with pytest.raises(InvalidRequest, match=says) as refused:
            dataset_files.import_items(session, project_id=project, name="qa", text=text, fmt="csv")
        assert refused.value.param == "file" and "(question, expected)" in refused.value.message
        assert datasets.get_by_name(session, project_id=project, name="qa") is None


def _principal(db) -> Principal:
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default")
        return Principal(project_id=project.id, project_name=project.name, role="admin")


ITEMS = [
    {"input": {"question": f"q{i}"}, "expected": f"q{i}" if i % 3 else "other"} for i in range(12)
]


async def _experiment(gw, echo_url: str, name: str) -> str:
    with gw.runtime.db.session() as session:
        experiment = service.create(
            session,
            project_id=_principal(gw.runtime.db).project_id,
            data=ExperimentCreate(
                name=name,
                dataset="resume",
                target={"type": "model", "model": "echo", "params": {"max_tokens": 8}},
                metrics=["exact_match", "contains", {"name": "rouge_l", "as": "rouge"}],
                concurrency=4,
            ),
        )
        return experiment.id


def test_experiment_runs_through_gateway_and_resumes_to_the_same_results(
    echo, database_url
) -> None:
    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "echo", echo.url)
            r = await gw.client.post("/api/datasets", json={"name": "resume", "items": ITEMS})
            assert r.status_code == 201, r.text
            principal = _principal(gw.runtime.db)
            whole = await _experiment(gw, echo.url, "whole")
            await run_experiment(gw.runtime, principal, whole)
            # Interrupted after 5 items (as Ctrl-C or a crash would), then resumed.
            split = await _experiment(gw, echo.url, "split")
            seen: list[tuple[int, int]] = []
            partial = await run_experiment(
                gw.runtime, principal, split, limit=5, progress=lambda d, t: seen.append((d, t))
            )
            assert partial.status == "interrupted" and partial.completed == 5
            hits_before = echo.hits
            resumed = await run_experiment(gw.runtime, principal, split)
            assert resumed.status == "done" and resumed.completed == 12
            assert echo.hits - hits_before == 7  # done items were not asked again
            assert seen[-1] == (5, 12)
            with gw.runtime.db.session() as session:
                a = service.get_or_raise(
                    session, project_id=principal.project_id, experiment_id=whole
                )
                b = service.get_or_raise(
                    session, project_id=principal.project_id, experiment_id=split
                )
                ra, rb = (
                    service.results(session, experiment=a),
                    service.results(session, experiment=b),
                )
                assert [(r.item_id, r.output, r.scores) for r in ra] == [
                    (r.item_id, r.output, r.scores) for r in rb
                ]
                assert a.summary["metrics"] == b.summary["metrics"]
                assert a.summary["metrics"]["exact_match"] == pytest.approx(8 / 12)
                assert all(r.cost and r.cost > 0 and r.latency_ms > 0 for r in ra)
                assert ra[0].scores["exact_match"]["explanation"]
            # Per-item traces went through the gateway pipeline, marked as evaluation traffic.
            await gw.runtime.gateway.drain()
            gw.runtime.writer.flush()
            results = (await gw.client.get(f"/api/experiments/{whole}/results")).json()
            trace = (await gw.client.get(f"/api/traces/{results[0]['trace_id']}")).json()
            assert trace["spans"][0]["attributes"]["source"] == "eval"
            compared = (
                await gw.client.get("/api/experiments/compare", params={"ids": f"{whole},{split}"})
            ).json()
            assert compared["metrics"] == ["exact_match", "contains", "rouge"]
            assert compared["summary"]["exact_match"][whole] == pytest.approx(8 / 12)
            assert len(compared["items"]) == 12 and set(compared["items"][0]["runs"]) == {
                whole,
                split,
            }

    asyncio.run(scenario())


def test_prompt_target_api_background_run_and_review_agreement(echo) -> None:
    async def scenario():
        async with running() as gw:
            c = gw.client
            await add_model(c, "echo", echo.url)
            r = await c.post(
                "/api/prompts/ask/versions",
                json={
                    "messages": [{"role": "user", "content": "{{ question }}"}],
                    "model": "echo",
                    "labels": ["production"],
                },
            )
            assert r.status_code == 201
            imported = await c.post(
                "/api/datasets/small/import",
                params={"format": "csv"},
                content="question,expected\nyes,yes\nno,yes\nmaybe,maybe\nsure,nope\n",
            )
            assert imported.status_code == 200, imported.text
            assert imported.json()["item_count"] == 4
            created = await c.post(
                "/api/experiments",
                json={
                    "dataset": "small",
                    "target": {"type": "prompt", "prompt": "ask@production"},
                    "metrics": ["exact_match"],
                },
            )
            assert created.status_code == 201, created.text
            exp_id = created.json()["id"]
            for _ in range(100):
                got = (await c.get(f"/api/experiments/{exp_id}")).json()
                if got["status"] == "done":
                    break
                await asyncio.sleep(0.05)
            assert got["status"] == "done" and got["summary"]["metrics"]["exact_match"] == 0.5
            # Experts review the results; their scores agree with exact match here.
            assert (
                await c.post(
                    "/api/review-queues", json={"name": "experts", "labels": ["good", "bad"]}
                )
            ).status_code == 201
            added = await c.post("/api/review-queues/experts/tasks", json={"experiment_id": exp_id})
            assert added.json() == {"added": 4}
            tasks = (
                await c.get("/api/review-queues/experts/tasks", params={"pending": True})
            ).json()
            for task in tasks:
                exact = task["payload"]["scores"]["exact_match"]["score"]
                r = await c.put(
                    f"/api/review-queues/experts/tasks/{task['id']}",
                    json={"score": exact, "label": "good" if exact else "bad", "comment": "ok"},
                )
                assert r.status_code == 200, r.text
            bad = await c.put(
                f"/api/review-queues/experts/tasks/{tasks[0]['id']}", json={"label": "meh"}
            )
            assert bad.status_code == 400
            agreement = (await c.get("/api/review-queues/experts/agreement")).json()
            assert agreement["exact_match"]["n"] == 4
            assert agreement["exact_match"]["cohen_kappa"] == 1.0
            assert agreement["exact_match"]["spearman"] == pytest.approx(1.0)
            # Requests from the explorer become dataset items.
            trace_id = (await c.get(f"/api/experiments/{exp_id}/results")).json()[0]["trace_id"]
            await gw.runtime.gateway.drain()
            gw.runtime.writer.flush()
            more = await c.post("/api/datasets/small/traces", json={"trace_ids": [trace_id]})
            assert more.status_code == 200, more.text
            assert more.json()["version"] == 2 and more.json()["item_count"] == 5
            items = (await c.get("/api/datasets/small/items")).json()
            assert items[-1]["source_trace_id"] == trace_id
            assert items[-1]["metadata"]["prompt"]["name"] == "ask"
            assert items[-1]["metadata"]["trace_id"] == trace_id
            # The prompt's variables come back, so the item re-runs against the prompt.
            assert items[-1]["input"]["question"] in ("yes", "no", "maybe", "sure")
            exported = await c.get(
                "/api/datasets/small/export", params={"format": "jsonl", "version": 1}
            )
            assert len(exported.text.splitlines()) == 4

    asyncio.run(scenario())


def test_pairwise_swaps_positions_so_a_position_biased_judge_ties(echo) -> None:
    async def scenario():
        async with running() as gw:
            c = gw.client
            await add_model(c, "echo", echo.url)
            await c.post("/api/datasets", json={"name": "resume", "items": ITEMS[:3]})
            principal = _principal(gw.runtime.db)
            ids = [await _experiment(gw, echo.url, n) for n in ("a", "b")]
            for experiment_id in ids:
                await run_experiment(gw.runtime, principal, experiment_id)
            # The echo model, as judge, repeats the prompt: it always names "Answer 1",
            # whichever answer is shown first. Asked in both orders, that bias cancels out.
            r = await c.post(
                "/api/experiments/pairwise",
                json={"a": ids[0], "b": ids[1], "judge": "echo", "max_tokens": 4},
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["items"] == 3 and body["ties"] == 3 and body["a_win_rate"] == 0.5
            assert "orders disagree" in body["verdicts"][0]["explanation"]

    asyncio.run(scenario())
