"""The built-in `local` provider: the bundled chat and embedding models, run on this machine.

Generation runs on one dedicated worker thread, off the event loop: concurrent requests
queue in arrival order instead of fighting over two cores. Greedy decoding (temperature 0 or
unset) is deterministic; a temperature above 0 samples, reproducibly when a seed is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmdeck.core.errors import ContextWindowExceeded, InvalidRequest
from llmdeck.providers import local_models
from llmdeck.providers.base import ChatChunk, ChatRequest, EmbeddingResult, Provider

DEFAULT_MAX_TOKENS = 512
_generation = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmdeck-generate")
_embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmdeck-embed")
_DONE = object()


class LocalProvider(Provider):
    name = "local"
    runs_locally = True

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if request.model != "smollm2-135m-instruct":
            raise InvalidRequest(
                f"The local provider has no chat model {request.model!r}.", param="model"
            )
        _refuse_unsupported(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(_generation, self._generate, request, emit, cancelled)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                yield item
            await future  # re-raises what the worker raised
        finally:
            # The client went away (or the stream ended): stop generating for nobody.
            cancelled.set()

    def _generate(self, request: ChatRequest, emit, cancelled: threading.Event) -> None:
        try:
            self._generate_into(request, emit, cancelled)
        except BaseException as exc:
            emit(_DONE)
            raise exc
        emit(_DONE)

    def _generate_into(self, request: ChatRequest, emit, cancelled: threading.Event) -> None:
        model, tokenizer = local_models.chat_model(
            self.settings.model_cache, self.settings.local_threads
        )
        # Both imported by now, under the models' lock (see local_models.stopping_criteria).
        import torch

        StoppingCriteria, StoppingCriteriaList = local_models.stopping_criteria()
        input_ids = tokenizer.apply_chat_template(
            _plain_messages(request.messages),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        prompt_tokens = int(input_ids.shape[1])
        window = request.context_window or local_models.CHAT_CONTEXT_WINDOW
        if prompt_tokens >= window:
            raise ContextWindowExceeded(
                f"The messages take {prompt_tokens} tokens; this model's context window is "
                f"{window}. Shorten the messages."
            )
        max_new = min(request.max_tokens or DEFAULT_MAX_TOKENS, window - prompt_tokens)
        stops = [s for s in (request.stop or []) if s]
        state = {"ids": [], "sent": 0, "stopped": False}

        def running(delta: str) -> ChatChunk:
            # Each piece says the tokens spent so far: a stream its reader stops is then
            # recorded (and settled against limits) with exact counts, not estimates.
            return ChatChunk(
                delta=delta, input_tokens=prompt_tokens, output_tokens=len(state["ids"])
            )

        class Relay(StoppingCriteria):
            """Streams each new token's text out and stops on a stop string or cancel."""

            def __call__(self, ids, scores, **kwargs):
                state["ids"].append(int(ids[0, -1]))
                text = tokenizer.decode(state["ids"], skip_special_tokens=True)
                cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    state["stopped"] = True
                # Hold back text that may be the start of a stop string or a partial character.
                safe = len(text) if state["stopped"] else _safe_length(text, stops)
                if safe > state["sent"]:
                    emit(running(text[state["sent"] : safe]))
                    state["sent"] = safe
                return torch.tensor([state["stopped"] or cancelled.is_set()])

        sample = bool(request.temperature and request.temperature > 0)
        options: dict[str, Any] = {"do_sample": sample}
        if sample:
            options["temperature"] = request.temperature
            if request.top_p is not None:
                options["top_p"] = request.top_p
            if request.seed is not None:
                torch.manual_seed(request.seed)
        else:
            # Greedy: unset the sampling defaults the model ships so no warning is raised.
            options.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new,
                stopping_criteria=StoppingCriteriaList([Relay()]),
                pad_token_id=tokenizer.eos_token_id,
                **options,
            )
        generated = output[0, prompt_tokens:].tolist()
        text = tokenizer.decode(generated, skip_special_tokens=True)
        if state["stopped"]:
            finish = "stop"
        else:
            if len(text) > state["sent"]:
                emit(running(text[state["sent"] :]))
            eos = bool(generated) and generated[-1] == tokenizer.eos_token_id
            finish = "stop" if eos or cancelled.is_set() else "length"
        emit(
            ChatChunk(
                finish_reason=finish, input_tokens=prompt_tokens, output_tokens=len(generated)
            )
        )

    async def embed(
        self,
        model: str,
        inputs: list[str],
        *,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        if model != "all-minilm-l6-v2":
            raise InvalidRequest(
                f"The local provider has no embedding model {model!r}.", param="model"
            )
        if dimensions not in (None, local_models.EMBEDDING_DIMENSIONS):
            raise InvalidRequest(
                f"The bundled embedding model gives {local_models.EMBEDDING_DIMENSIONS}-"
                "dimensional vectors and cannot shorten them. Remove `dimensions`, or call a "
                "model that can (a gateway route).",
                param="dimensions",
                code="unsupported_parameter",
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_embedding, self._embed, inputs, truncate)

    def _embed(self, inputs: list[str], truncate: bool) -> EmbeddingResult:
        embedder = local_models.embedding_model(self.settings.local_threads)
        limit = embedder.max_seq_length
        # Counted whole (special tokens included, as the model reads them): the model itself
        # would silently drop what lies past `limit` and answer as if it had read it all.
        # verbose=False: an over-long input is this check's business, not a log warning.
        lengths = [len(ids) for ids in embedder.tokenizer(inputs, verbose=False)["input_ids"]]
        cut = [i for i, n in enumerate(lengths) if n > limit]
        if cut and not truncate:
            raise _too_long(cut, lengths, limit)
        vectors = embedder.encode(inputs, batch_size=64, normalize_embeddings=True)
        return EmbeddingResult(
            vectors=vectors.tolist(),
            input_tokens=sum(min(n, limit) for n in lengths),
            truncated=cut,
        )


def _too_long(cut: list[int], lengths: list[int], limit: int) -> ContextWindowExceeded:
    first = cut[0]
    others = f" ({len(cut) - 1} more inputs are too long as well)" if len(cut) > 1 else ""
    return ContextWindowExceeded(
        f"Input {first} is {lengths[first]} word pieces (tokens) long{others}; the bundled "
        f"embedding model reads at most {limit}, and would embed only its start. Shorten or "
        f'split it, or send "truncate": true to embed its first {limit} word pieces.',
        param="input",
    )


def _refuse_unsupported(request: ChatRequest) -> None:
    """Refuse what the small local model cannot do, rather than answer as if it had."""
    extra = request.extra

    def refuse(param: str, what: str) -> None:
        raise InvalidRequest(
            f"The bundled chat model does not support {what}. Remove `{param}`, or call a "
            "model served by an OpenAI-compatible upstream that does (a gateway route).",
            param=param,
            code="unsupported_parameter",
        )

    if extra.get("tools") and extra.get("tool_choice", "auto") != "none":
        refuse("tools", "tool (function) calling")
    if extra.get("functions"):
        refuse("functions", "function calling")
    response_format = extra.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        refuse("response_format", "JSON mode or structured outputs")
    if extra.get("logprobs") or extra.get("top_logprobs") is not None:
        refuse("logprobs", "log probabilities")
    if extra.get("logit_bias"):
        refuse("logit_bias", "logit bias")
    for penalty in ("presence_penalty", "frequency_penalty"):
        if extra.get(penalty):
            refuse(penalty, "presence or frequency penalties")
    for i, message in enumerate(request.messages):
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            kind = part.get("type", "text") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise InvalidRequest(
                    f"The bundled chat model reads text only; message {i} has a {kind!r} part. "
                    "Send text, or call a model that takes it (a gateway route).",
                    param=f"messages.{i}.content",
                    code="unsupported_content",
                )


def _plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages with content flattened to text (the small model reads only text)."""
    plain = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        plain.append({"role": message["role"], "content": content})
    return plain


def _safe_length(text: str, stops: list[str]) -> int:
    """How much of `text` can be sent without revealing a possible stop string's start."""
    if text.endswith("\ufffd"):  # a multi-byte character still being decoded
        text = text[:-1]
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return len(text) - hold


def plugin(hub) -> None:
    hub.providers.register(LocalProvider.name, LocalProvider)
