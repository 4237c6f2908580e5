"""Rate limits and budgets: atomic under concurrency, shared by server processes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from llmdeck.gateway.limits import Ledger, period_window
from tests.conftest import start_server, stop_server
from tests.test_gateway_support import running


def test_budget_admits_3_of_50_concurrent_requests(database_url, upstream) -> None:
    """Each call costs $10 (reserved before, the same after); the budget is $35."""
    upstream.default = {"kind": "delay", "seconds": 0.2, "text": "ten", "completion_tokens": 10}

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)], output_price_per_mtok=1_000_000)
            limit = {"project": "default", "budget": 35, "budget_period": "day"}
            assert (await gw.client.put("/api/gateway/limits", json=limit)).status_code == 200
            responses = await asyncio.gather(
                *(gw.chat("r", max_tokens=10, stream=i % 2 == 0) for i in range(50))
            )
            codes = [r.status_code for r in responses]
            assert codes.count(200) == 3 and codes.count(429) == 47, codes
            refused = next(r for r in responses if r.status_code == 429)
            assert int(refused.headers["retry-after"]) >= 1
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "budget_exceeded")
            assert "budget" in error["message"]
            await gw.runtime.gateway.drain()
            spent = Ledger(gw.runtime.db).value("spend:project:")
            assert spent == 30
            # The next period's budget is untouched; this one stays closed.
            assert (await gw.chat("r", max_tokens=10)).status_code == 429

    asyncio.run(scenario())
    assert upstream.hits == 3


def test_requests_and_tokens_per_minute_per_key_and_project(upstream) -> None:
    _avoid_minute_boundary()

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            created = await gw.client.post("/api/keys", json={"name": "limited"})
            key = created.json()
            await gw.client.put("/api/gateway/limits", json={"key": key["prefix"], "rpm": 2})
            limited = {"Authorization": f"Bearer {key['key']}"}
            codes = [(await gw.chat("r", _headers=limited)).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            assert (await gw.chat("r")).status_code == 200  # the master key is not limited

            await gw.client.put("/api/gateway/limits", json={"project": "default", "tpm": 100})
            # About 95 tokens reserved; the upstream then reports 14 used.
            assert (await gw.chat("r", max_tokens=90)).status_code == 200
            await gw.runtime.gateway.drain()
            refused = await gw.chat("r", max_tokens=90)
            assert refused.status_code == 429 and "tokens per minute" in refused.text
            assert (await gw.chat("r", max_tokens=50)).status_code == 200

    asyncio.run(scenario())


def test_a_rate_limit_holds_across_two_server_processes(tmp_path, database_url, upstream) -> None:
    home = tmp_path / "shared"
    first = start_server(home, database_url=database_url)
    second = start_server(home, database_url=database_url)
    try:
        with first.client() as admin:
            route = {"deployments": [{"name": "a", "upstream": "m", "base_url": upstream.url}]}
            assert admin.put("/api/gateway/routes/r", json=route).status_code == 200
            limit = {"project": "default", "rpm": 4}
            assert admin.put("/api/gateway/limits", json=limit).status_code == 200
        _avoid_minute_boundary()
        clients = [first.client(), second.client()]
        body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
        codes = []
        for i in range(10):
            codes.append(clients[i % 2].post("/v1/chat/completions", json=body).status_code)
        for client in clients:
            client.close()
        assert codes.count(200) == 4 and codes.count(429) == 6, codes
        assert upstream.hits == 4
    finally:
        stop_server(first)
        stop_server(second)


def test_a_budget_refusal_says_whether_it_is_spent_or_the_request_does_not_fit(
    database_url, upstream
) -> None:
    """$1 per output token, $5 a day: a 10-token request does not fit even unspent."""
    upstream.default = {"kind": "ok", "text": "x", "completion_tokens": 3}

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)], output_price_per_mtok=1_000_000)
            limit = {"project": "default", "budget": 5, "budget_period": "day"}
            assert (await gw.client.put("/api/gateway/limits", json=limit)).status_code == 200

            async def refusal(**body) -> str:
                response = await gw.chat("r", **body)
                assert response.status_code == 429, response.text
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["code"] == "budget_exceeded"
                return response.json()["error"]["message"]

            first = await refusal(max_tokens=10)  # nothing spent yet
            assert "has spent" not in first
            assert "estimated cost, $10.00 (" in first and "max_tokens=10 output tokens" in first
            assert "the $5.00 left of this project's budget of $5 per day" in first
            assert "Lower max_tokens" in first
            unset = await refusal()  # max_tokens unset: the reserved default is the estimate
            assert "256 output tokens reserved, as max_tokens is not set" in unset
            assert "Set a lower max_tokens" in unset

            assert (await gw.chat("r", max_tokens=3)).status_code == 200
            await gw.runtime.gateway.drain()
            assert "the $2.00 left" in await refusal(max_tokens=3)
            upstream.default = {"kind": "ok", "text": "x", "completion_tokens": 2}
            assert (await gw.chat("r", max_tokens=2)).status_code == 200
            await gw.runtime.gateway.drain()
            spent = await refusal(max_tokens=1)
            assert spent.startswith("This project has spent its budget of $5 per day.")

            key = (await gw.client.post("/api/keys", json={"name": "k"})).json()
            await gw.client.delete("/api/gateway/limits", params={"project": "default"})
            await gw.client.put("/api/gateway/limits", json={"key": key["prefix"], "budget": 5})
            as_key = {"Authorization": f"Bearer {key['key']}"}
            by_key = await gw.chat("r", max_tokens=10, _headers=as_key)
            message = by_key.json()["error"]["message"]
            assert "left of this API key's budget of $5 per month" in message, message

    asyncio.run(scenario())


def test_budget_periods() -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
    assert period_window("day", now)[1] == datetime(2026, 11, 24, tzinfo=UTC)
    assert period_window("week", now) == (now.replace(hour=0), datetime(2026, 11, 30, tzinfo=UTC))
    assert period_window("month", now) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )


def _avoid_minute_boundary() -> None:
    """Per-minute windows restart on the minute; keep a short test inside one window."""
    second = time.time() % 60
    if second > 45:
        time.sleep(61 - second)


def test_bookkeeping_left_on_one_loop_is_drained_from_another() -> None:
    """The job runner's loop leaves reconciliations behind; shutdown drains on the server's."""
    import threading
    import time

    from llmdeck.gateway.offpath import OffPath

    done: list[int] = []
    work = OffPath("test work")

    async def leave() -> None:
        work.submit(lambda: (time.sleep(0.2), done.append(1)))

    thread = threading.Thread(target=lambda: asyncio.run(leave()))
    thread.start()
    thread.join()
    asyncio.run(work.drain())
    assert done == [1]
