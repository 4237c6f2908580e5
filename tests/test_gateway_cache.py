"""The response cache: exact and semantic, opt-out per request, shown in header and trace."""

from __future__ import annotations

import asyncio

from bench.gateway.paraphrases import CASES

from tests.test_gateway_support import running, sse, streamed_text

HEADER = "x-llmdeck-cache"


def test_exact_cache_answers_repeats_and_respects_opt_outs(database_url, upstream) -> None:
    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)], input_price_per_mtok=1)
            first = await gw.chat("r", "What is 2+2?", temperature=0)
            assert "x-llmdeck-cache" not in first.headers  # no cache policy yet
            policy = {"project": "default", "ttl_seconds": 1}
            assert (await gw.client.put("/api/gateway/cache", json=policy)).status_code == 200

            miss = await gw.chat("r", "What is 2+2?", temperature=0)
            assert miss.headers[HEADER] == "miss"
            await gw.runtime.gateway.drain()  # the entry is stored off the response path
            hit = await gw.chat("r", "  What is 2+2? ", temperature=0)
            assert hit.headers[HEADER] == "hit"
            assert hit.json()["choices"][0]["message"] == miss.json()["choices"][0]["message"]
            span = await gw.span(hit)
            assert span.attributes["cache"] == "hit" and span.cost == 0
            streamed = await gw.chat("r", "What is 2+2?", temperature=0, stream=True)
            assert streamed.headers[HEADER] == "hit"
            assert streamed_text(sse(streamed)) == "Hello from upstream."
            assert upstream.hits == 2

            # Another parameter is another request; opting out skips the cache.
            assert (await gw.chat("r", "What is 2+2?", temperature=1)).headers[HEADER] == "miss"
            off = await gw.chat("r", "What is 2+2?", temperature=0, cache=False)
            assert off.headers[HEADER] == "off"
            by_header = await gw.chat("r", "What is 2+2?", temperature=0, _headers={HEADER: "off"})
            assert by_header.headers[HEADER] == "off"
            assert upstream.hits == 5

            await asyncio.sleep(1.1)  # past the TTL
            assert (await gw.chat("r", "What is 2+2?", temperature=0)).headers[HEADER] == "miss"

    asyncio.run(scenario())


def test_semantic_cache_hit_and_false_hit_rates(upstream) -> None:
    """Paraphrases should hit, near-misses must not; prints the rates (see BENCHMARKS.md)."""
    threshold = 0.9

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            policy = {"project": "default", "exact": True, "semantic_threshold": threshold}
            assert (await gw.client.put("/api/gateway/cache", json=policy)).status_code == 200
            for base, _, _ in CASES:
                assert (await gw.chat("r", base)).headers[HEADER] == "miss"
            await gw.runtime.gateway.drain()
            hits = [(await gw.chat("r", p)).headers[HEADER] for _, p, _ in CASES]
            false_hits = [(await gw.chat("r", m)).headers[HEADER] for _, _, m in CASES]
            span = await gw.span(await gw.chat("r", CASES[0][1]))
            assert span.attributes["cache"] == "semantic-hit"
            assert span.attributes["cache_similarity"] >= threshold
            return hits, false_hits

    hits, false_hits = asyncio.run(scenario())
    hit_rate = hits.count("semantic-hit") / len(CASES)
    false_rate = false_hits.count("semantic-hit") / len(CASES)
    print(
        f"semantic cache at {threshold}: hit rate {hit_rate:.0%}, false-hit rate {false_rate:.0%}"
    )
    assert hit_rate >= 0.6
    assert false_rate <= 0.15


def test_the_exact_key_covers_tools_and_non_text_parts(database_url, upstream) -> None:
    """A request differing only in its tools, response format or image is another request;
    an answer that calls a tool is never cached (the caller acts on it and calls again)."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

    def with_image(url: str) -> list[dict]:
        parts = [{"type": "text", "text": "What is this?"}]
        return [
            {"role": "user", "content": [*parts, {"type": "image_url", "image_url": {"url": url}}]}
        ]

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            policy = {"project": "default", "semantic_threshold": 0.9}
            assert (await gw.client.put("/api/gateway/cache", json=policy)).status_code == 200
            assert (await gw.chat("r", "Hi")).headers[HEADER] == "miss"
            await gw.runtime.gateway.drain()
            assert (await gw.chat("r", "Hi")).headers[HEADER] == "hit"
            assert (await gw.chat("r", "Hi", tools=tools)).headers[HEADER] == "miss"
            json_mode = await gw.chat("r", "Hi", response_format={"type": "json_object"})
            assert json_mode.headers[HEADER] == "miss"

            first = await gw.chat("r", messages=with_image("http://img/1.png"))
            assert first.headers[HEADER] == "miss"
            await gw.runtime.gateway.drain()
            assert (await gw.chat("r", messages=with_image("http://img/1.png"))).headers[
                HEADER
            ] == "hit"
            other = await gw.chat("r", messages=with_image("http://img/2.png"))
            assert other.headers[HEADER] == "miss"  # same text, another image: not similar

            upstream.default = {
                "kind": "tools",
                "calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
            }
            for _ in range(2):
                called = await gw.chat("r", "Call f", tools=tools)
                assert called.headers[HEADER] == "miss"
                assert called.json()["choices"][0]["message"]["tool_calls"][0]["id"] == "c1"
                await gw.runtime.gateway.drain()

    asyncio.run(scenario())


def test_a_failing_semantic_lookup_is_a_miss_not_a_failed_call(database_url, upstream) -> None:
    """The policy's embedding model down must not take every chat call down with it."""

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            dead = {"name": "e", "upstream": "e", "base_url": "http://127.0.0.1:9/v1"}
            await gw.put_route("dead-embedder", [dead], kind="embedding", retries=0)
            policy = {
                "project": "default",
                "semantic_threshold": 0.9,
                "embedding_model": "dead-embedder",
            }
            assert (await gw.client.put("/api/gateway/cache", json=policy)).status_code == 200
            answered = await gw.chat("r", "Hi")
            assert answered.status_code == 200, answered.text
            assert answered.headers[HEADER] == "miss"
            span = await gw.span(answered)
            assert "upstream" in span.attributes["cache_error"].lower()

    asyncio.run(scenario())
