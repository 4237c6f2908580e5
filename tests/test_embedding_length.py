"""Inputs longer than the bundled embedding model reads (256 word pieces) are refused, or
cut when the caller asks: through the official `openai` client, in the semantic cache, and
in knowledge bases."""

from __future__ import annotations

import asyncio
import random

import httpx
import openai
import pytest

from llmdeck.providers import local_models
from tests.test_gateway_support import MASTER, running

LIMIT = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
WORDS = [
    "river",
    "mountain",
    "lantern",
    "copper",
    "harvest",
    "violin",
    "orbit",
    "meadow",
    "glacier",
    "compass",
    "thunder",
    "pepper",
    "canyon",
    "marble",
    "falcon",
    "harbor",
    "velvet",
    "quarry",
    "prism",
    "saddle",
]


def long_text(words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def word_pieces(text: str) -> int:
    """What the model would read of `text` if it read it all, special tokens included."""
    return len(local_models.embedding_model().tokenizer(text, verbose=False)["input_ids"])


def _openai(gw) -> openai.AsyncOpenAI:
    """The official client, talking to the in-process app (the gateway's own fast path)."""
    transport = httpx.ASGITransport(app=gw.app)
    return openai.AsyncOpenAI(
        base_url="http://llmdeck/v1",
        api_key=MASTER,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=transport, base_url="http://llmdeck/v1"),
    )


def test_an_over_long_input_is_refused_unless_truncation_is_asked_for() -> None:
    document = long_text(2000)
    pieces = word_pieces(document)
    assert pieces > LIMIT

    async def scenario():
        async with running() as gw:
            client = _openai(gw)
            with pytest.raises(openai.BadRequestError) as refused:
                await client.embeddings.create(model="minilm-l6", input=["Hello.", document])
            error = refused.value.body
            assert refused.value.status_code == 400
            assert error["code"] == "context_length_exceeded" and error["param"] == "input"
            message = error["message"]
            assert f"Input 1 is {pieces} word pieces" in message
            assert f"reads at most {LIMIT}" in message and '"truncate": true' in message

            cut = await client.embeddings.create(
                model="minilm-l6", input=document, extra_body={"truncate": True}
            )
            assert len(cut.data) == 1 and len(cut.data[0].embedding) == 384
            assert cut.usage.prompt_tokens == cut.usage.total_tokens == LIMIT
            span = await gw.span(
                await gw.client.post(
                    "/v1/embeddings",
                    json={"model": "minilm-l6", "input": [document, "a"], "truncate": True},
                )
            )
            assert span.attributes["embedding.truncated"] == 1
            assert span.input_tokens == LIMIT + word_pieces("a")

            # A short input is read whole, with or without the switch.
            short = "The cat sat on the mat."
            plain = await client.embeddings.create(model="minilm-l6", input=short)
            switched = await client.embeddings.create(
                model="minilm-l6", input=short, extra_body={"truncate": True}
            )
            assert plain.usage.prompt_tokens == switched.usage.prompt_tokens == word_pieces(short)
            assert plain.data[0].embedding == pytest.approx(switched.data[0].embedding, abs=1e-6)

            # The cut vector is the vector of what the model read: the first 256 word pieces.
            tokenizer = local_models.embedding_model().tokenizer
            ids = tokenizer(document, verbose=False)["input_ids"][1 : LIMIT - 1]
            start = tokenizer.decode(ids)
            read = await client.embeddings.create(model="minilm-l6", input=start)
            assert read.usage.prompt_tokens == LIMIT
            assert cut.data[0].embedding == pytest.approx(read.data[0].embedding, abs=1e-4)

    asyncio.run(scenario())


def test_truncate_is_not_sent_to_an_upstream(upstream) -> None:
    """Upstream deployments decide for themselves; llmdeck's own field stays here."""

    async def scenario():
        async with running() as gw:
            await gw.put_route("up-embedder", [("a", upstream.url)], kind="embedding")
            client = _openai(gw)
            answer = await client.embeddings.create(
                model="up-embedder", input=long_text(2000), extra_body={"truncate": True}
            )
            assert len(answer.data) == 1
            assert "truncate" not in upstream.requests[-1]

    asyncio.run(scenario())


def test_long_messages_that_differ_only_at_the_end_are_not_a_semantic_hit(upstream) -> None:
    """A pasted document, then two different questions: truncated, both would embed as the
    document's start and the second would get the first one's answer."""
    document = long_text(1500, seed=1)
    first = f"{document}\n\nWhat is the third word of this text?"
    second = f"{document}\n\nHow many times does the word falcon appear in this text?"

    async def scenario():
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            policy = {"project": "default", "exact": True, "semantic_threshold": 0.9}
            assert (await gw.client.put("/api/gateway/cache", json=policy)).status_code == 200
            assert (await gw.chat("r", first)).headers["x-llmdeck-cache"] == "miss"
            await gw.runtime.gateway.drain()
            other = await gw.chat("r", second)
            assert other.status_code == 200 and other.headers["x-llmdeck-cache"] == "miss"
            span = await gw.span(other)
            assert span.attributes["cache_semantic"].startswith("skipped")
            assert "cache_error" not in span.attributes
            assert upstream.hits == 2
            # The exact cache still answers a repeat.
            assert (await gw.chat("r", first)).headers["x-llmdeck-cache"] == "hit"
            # Short paraphrases still meet in the semantic cache.
            assert (await gw.chat("r", "What is the capital of France?")).headers[
                "x-llmdeck-cache"
            ] == "miss"
            await gw.runtime.gateway.drain()
            paraphrase = await gw.chat("r", "Which city is the capital of France?")
            assert paraphrase.headers["x-llmdeck-cache"] == "semantic-hit"
            assert upstream.hits == 3

    asyncio.run(scenario())
