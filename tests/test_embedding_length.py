"""Inputs longer than the bundled embedding model reads (256 word pieces) are refused, or
cut when the caller asks: through the official `openai` client, in the semantic cache, and
in knowledge bases."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.identity import service as identity
from llmdeck.providers import local_models
from tests.test_gateway_support import MASTER, running
from tests.test_knowledge import FAQ, GUIDE, _key, create_kb, search, upload, wait

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


# Knowledge bases: chunks are embedded with truncation on, and the cut ones are counted.

NOTICE = (
    "2 chunks are longer than minilm-l6 reads (256 word pieces); vector search sees only "
    "their start. Lower chunk_size."
)


def long_document() -> bytes:
    """About 1,300 word pieces: a topic sentence, filler, and a word only keyword search
    can find in the first chunk (it lies past what the model reads of it)."""
    filler = long_text(1300, seed=2).split()
    filler[400] = "xylophone"
    opening = "Espresso is brewed by forcing hot water through finely ground coffee beans. "
    return (opening + " ".join(filler)).encode()


@pytest.fixture
def kb_api(db, settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {_key(db, 'default')}"
        yield http


def test_a_knowledge_base_says_how_many_chunks_its_vectors_see_only_the_start_of(
    kb_api: TestClient,
) -> None:
    http = kb_api
    # 600-token fixed windows: two of the long document's three chunks are over 256.
    create_kb(http, "big", chunking={"strategy": "fixed", "chunk_size": 600, "chunk_overlap": 0})
    job = wait(
        http, upload(http, "big", {"long.txt": long_document(), "guide.md": GUIDE})["job_id"]
    )
    assert job["result"]["truncated_chunks"] == 2 and job["result"]["notices"] == [NOTICE]
    listed = http.get("/api/knowledge-bases/big/documents").json()["data"]
    documents = {d["name"]: d for d in listed}
    assert documents["long.txt"]["status"] == "ready" and documents["long.txt"]["chunk_count"] == 3
    assert documents["long.txt"]["truncated_chunks"] == 2
    assert documents["guide.md"]["truncated_chunks"] == 0
    assert http.get("/api/knowledge-bases/big/documents/long.txt").json()["truncated_chunks"] == 2
    kb = http.get("/api/knowledge-bases/big").json()
    assert kb["truncated_chunks"] == 2 and kb["truncation_notice"] == NOTICE

    # Vector search still works (on the chunks' starts); a hit says its vector was cut.
    hit = search(http, "big", "how is espresso coffee brewed", mode="vector", top_k=1)[0]
    assert hit["document_name"] == "long.txt" and hit["metadata"]["embedding_truncated"] is True
    guide = search(http, "big", "check the inverter for faults", mode="vector", top_k=1)[0]
    assert guide["document_name"] == "guide.md" and "embedding_truncated" not in guide["metadata"]
    # Keyword search sees all of a chunk, past what its vector read.
    found = search(http, "big", "xylophone", mode="keyword", top_k=1)
    assert found[0]["chunk_id"] == hit["chunk_id"]
    # A query longer than the model reads (within the 4,000 characters search takes) is
    # embedded by its start, not refused.
    query = "How is espresso coffee brewed? " + long_text(450, seed=3)
    assert len(query) <= 4000 and word_pieces(query) > LIMIT
    assert search(http, "big", query, mode="vector", top_k=1)[0]["document_name"] == "long.txt"

    # The console shows it where the documents are listed.
    from tests.test_console import add_user, sign_in

    add_user(http.app, "kb@x.io", "viewer")
    sign_in(http, "kb@x.io")
    page = http.get("/knowledge/big", headers={"Authorization": ""}).text
    assert NOTICE in page and "2 too long to embed whole" in page


def test_a_knowledge_base_with_default_chunking_reports_no_cut_chunks(kb_api: TestClient) -> None:
    http = kb_api
    create_kb(http, "docs")
    job = wait(http, upload(http, "docs", {"faq.txt": FAQ, "guide.md": GUIDE})["job_id"])
    assert job["result"]["truncated_chunks"] == 0 and job["result"]["notices"] == []
    kb = http.get("/api/knowledge-bases/docs").json()
    assert kb["truncated_chunks"] == 0 and kb["truncation_notice"] is None
    documents = http.get("/api/knowledge-bases/docs/documents").json()["data"]
    assert [d["truncated_chunks"] for d in documents] == [0, 0]


def test_kb_add_says_when_chunks_are_longer_than_the_model_reads(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    (tmp_path / "long.txt").write_bytes(long_document())
    runner = CliRunner()
    options = ["--strategy", "fixed", "--chunk-size", "600", "--chunk-overlap", "0"]
    created = runner.invoke(app, ["kb", "create", "big", *options])
    assert created.exit_code == 0, created.output
    added = runner.invoke(app, ["kb", "add", "big", str(tmp_path / "long.txt")])
    assert added.exit_code == 0, added.output
    assert f"note: {NOTICE}" in " ".join(added.output.split())
    (tmp_path / "faq.txt").write_bytes(FAQ)
    plain = runner.invoke(app, ["kb", "add", "small", str(tmp_path / "faq.txt")])
    assert plain.exit_code == 0 and "note:" not in plain.output


# Other callers: evaluation metrics and drift reports choose per use.


def test_eval_metrics_refuse_or_cut_long_texts_as_their_measure_needs() -> None:
    from llmdeck.evals.metrics import Sample
    from llmdeck.evals.metrics.rag import AnswerRelevance, ContextPrecision, ContextRecall
    from llmdeck.evals.metrics.semantic import EmbeddingSimilarity
    from tests.test_evals_experiments import _principal

    long_answer = "The Eiffel Tower is in Paris. " + long_text(600, seed=4)
    context = "The Eiffel Tower is in Paris. It was completed in 1889. " + long_text(600, seed=5)

    async def scenario():
        async with running() as gw:

            def sample(output: str, **fields) -> Sample:
                return Sample(
                    input={"question": "Where is the Eiffel Tower?"},
                    output=output,
                    runtime=gw.runtime,
                    principal=_principal(gw.runtime.db),
                    **fields,
                )

            # Similarity of two long texts' openings could pass a wrong answer: no score.
            similar = await EmbeddingSimilarity().score(
                sample(long_answer, expected=long_text(600, seed=6))
            )
            assert similar.value is None and "longer than minilm-l6 reads" in similar.explanation
            # An answer addresses its question in its opening: a long one is judged by it.
            relevant = await AnswerRelevance().score(sample(long_answer))
            assert relevant.value is not None and relevant.value > 0.3, relevant.explanation
            # Whole retrieved contexts are judged by their start; their sentences cover the rest.
            recalled = await ContextRecall().score(
                sample("In Paris.", expected="It is in Paris.", contexts=[context])
            )
            assert recalled.value == 1.0, recalled.explanation
            precise = await ContextPrecision().score(
                sample("In Paris.", expected="The Eiffel Tower is in Paris.", contexts=[context])
            )
            assert precise.value == 1.0, precise.explanation

    asyncio.run(scenario())


def test_a_drift_report_over_long_inputs_embeds_their_openings() -> None:
    from datetime import UTC, datetime

    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import prepare_database
    from tests.test_monitoring_drift import _seed

    settings = get_settings()
    db = prepare_database(settings)
    now = datetime.now(UTC)
    with db.session() as session:
        project_id = identity.ensure_project(session, name="default").id
    baseline = [long_text(400, seed=i) for i in range(6)]
    recent = [long_text(400, seed=100 + i) for i in range(6)]
    assert word_pieces(baseline[0][:2000]) > LIMIT  # still too long once cut to 2,000 chars
    _seed(db, project_id, baseline, recent, now)
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {_key(db, 'default')}"
        body = {"baseline_days": 7, "recent_hours": 24, "permutations": 50}
        report = http.post("/api/monitoring/drift-reports", json=body)
        assert report.status_code == 201, report.text
        assert report.json()["p_value"] is not None
