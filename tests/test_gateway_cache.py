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
