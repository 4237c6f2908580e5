"""The built-in `openai` provider: any OpenAI-compatible server (OpenAI, vLLM, Ollama, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from llmdeck.core import timeouts
from llmdeck.core.errors import (
    InvalidRequest,
    LLMDeckError,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    sentence,
)
from llmdeck.providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResult,
    EmbeddingResult,
    Provider,
)


class OpenAICompatibleProvider(Provider):
    name = "openai"
    needs_base_url = True

    def __init__(self, connection, settings):
        super().__init__(connection, settings)
        if not connection.base_url:
            raise InvalidRequest(
                "An OpenAI-compatible model needs a base URL, e.g. http://localhost:8080/v1.",
                param="base_url",
            )
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._fast: dict[int, _KeepAlivePool] = {}
        # TLS, and proxies from the environment, stay with httpx.
        self._plain_http = connection.base_url.startswith("http://")
        self._last: tuple[asyncio.AbstractEventLoop | None, _KeepAlivePool | None] = (None, None)

    def _client(self) -> httpx.AsyncClient:
        # httpx clients belong to one event loop; keep one per loop.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            headers = {}
            if self.connection.api_key:
                headers["Authorization"] = f"Bearer {self.connection.api_key}"
            client = httpx.AsyncClient(
                base_url=self.connection.base_url.rstrip("/") + "/",
                headers=headers,
                timeout=httpx.Timeout(
                    self.settings.upstream_read_timeout,
                    connect=self.settings.upstream_connect_timeout,
                ),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
            self._clients[loop_id] = client
        return client

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            **request.extra,
            "model": request.model,
            "messages": request.messages,
        }
        for name in ("temperature", "top_p", "max_tokens", "stop", "seed"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        data = await self._post("chat/completions", self._body(request, stream=False))
        try:
            choice = data["choices"][0]
            message = choice["message"]
            usage = data.get("usage") or {}
            return ChatResult(
                content=message.get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                tool_calls=message.get("tool_calls") or None,
                logprobs=choice.get("logprobs"),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UpstreamError(f"The upstream answered in an unexpected shape: {exc!r}") from None

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = self._body(request, stream=True)
        finish: str | None = None
        usage: dict[str, Any] = {}
        answering = False
        try:
            async with self._stream("chat/completions", body) as lines:
                answering = True
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = _json(payload)
                    if "error" in event:
                        message = (event["error"] or {}).get("message", "unknown error")
                        raise UpstreamError(f"The upstream failed mid-stream: {message}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        delta = choice.get("delta") or {}
                        finish = choice.get("finish_reason") or finish
                        content, tool_calls = delta.get("content"), delta.get("tool_calls")
                        logprobs = choice.get("logprobs")
                        if content or tool_calls or logprobs:
                            yield ChatChunk(
                                delta=content or "", tool_calls=tool_calls, logprobs=logprobs
                            )
                else:
                    raise UpstreamError("The upstream closed the stream before [DONE].")
        except httpx.TimeoutException:
            raise UpstreamTimeout("The upstream did not answer in time.") from None
        except httpx.HTTPError as exc:
            if answering:
                raise UpstreamError(f"The upstream broke off its answer: {exc}") from None
            raise UpstreamError(f"Could not reach the upstream: {exc}") from None
        yield ChatChunk(
            finish_reason=finish or "stop",
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )

    @contextlib.asynccontextmanager
    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
        """The lines of a streamed answer; an HTTP error status raises before any line."""
        pool = self._pool()
        if pool is not None:
            async with pool.stream(path, _encode(body)) as lines:
                yield lines
            return
        async with self._client().stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _status_error(response)
            yield response.aiter_lines()

    async def embed(
        self,
        model: str,
        inputs: list[str],
        *,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        # `truncate` is llmdeck's own and not sent: the upstream refuses or cuts an
        # over-long input as it does (OpenAI refuses; TEI has its own switch).
        body: dict[str, Any] = {"model": model, "input": inputs}
        if dimensions is not None:
            body["dimensions"] = dimensions
        data = await self._post("embeddings", body)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            return EmbeddingResult(
                vectors=[row["embedding"] for row in rows],
                input_tokens=int((data.get("usage") or {}).get("prompt_tokens") or 0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"The upstream answered in an unexpected shape: {exc!r}") from None

    def _pool(self) -> _KeepAlivePool | None:
        """The lean client for plain-http upstreams (serving engines nearby), per loop."""
        if not self._plain_http:
            return None
        loop = asyncio.get_running_loop()
        last_loop, pool = self._last
        if last_loop is loop:
            return pool  # the common case: a server process runs one loop
        loop_id = id(loop)
        pool = self._fast.get(loop_id)
        if pool is None:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.connection.api_key:
                headers["Authorization"] = f"Bearer {self.connection.api_key}"
            pool = self._fast[loop_id] = _KeepAlivePool(
                self.connection.base_url,
                headers,
                connect_timeout=self.settings.upstream_connect_timeout,
                read_timeout=self.settings.upstream_read_timeout,
            )
        self._last = (loop, pool)
        return pool

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            pool = self._pool()
            if pool is not None:
                response = await pool.post(path, _encode(body))
            else:
                response = await self._client().post(path, json=body)
        except httpx.TimeoutException:
            raise UpstreamTimeout("The upstream did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Could not reach the upstream: {exc}") from None
        if response.status_code >= 400:
            raise _status_error(response)
        return _json(response.content)

    async def aclose(self) -> None:
        pools, self._fast, self._last = list(self._fast.values()), {}, (None, None)
        for pool in pools:
            pool.close()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its event loop is already gone
                await client.aclose()


class _KeepAlivePool:
    """A lean HTTP/1.1 keep-alive client for one plain-http upstream, on one event loop.

    The gateway's calls to plain-http upstreams go through it, streamed or not: httpx costs
    several times more CPU per request, and its connection pool scans every waiting request
    against every connection (most of the CPU with hundreds of streams open). It speaks
    only what OpenAI-compatible servers answer (Content-Length or chunked bodies) and
    raises httpx's exceptions, so errors are translated in one place.
    """

    KEEP = 64

    def __init__(
        self, base_url: str, headers: dict[str, str], *, connect_timeout: float, read_timeout: float
    ):
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/") + "/"
        fixed = {"Host": url.netloc, **headers}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with timeouts.timeout(self.connect_timeout):
                return await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting to the upstream timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from None

    async def post(self, path: str, body: bytes) -> _Reply:
        # One timer for the whole answer, head and body.
        with _read_errors("the upstream did not answer in time"):
            async with timeouts.timeout(self.read_timeout):
                conn, status, fields = await self._send(path, body)
                done = False
                try:
                    content = await _read_body(conn[0], fields)
                    done = True
                finally:
                    self._release(conn, reuse=done and _keeps_alive(fields))
        return _Reply(status, fields, content)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[str]]:
        """POST and give the answer's lines as they arrive (server-sent events).

        The connection goes back to the pool only when the body was read to its end;
        a stream left early is closed, since unread bytes would corrupt the next answer.
        """
        with _read_errors("the upstream did not answer in time"):
            async with timeouts.timeout(self.read_timeout):
                conn, status, fields = await self._send(path, body)
        lines = _Lines(conn[0], fields, self.read_timeout)
        try:
            if status >= 400:
                content = "\n".join([line async for line in lines]).encode()
                raise _status_error(_Reply(status, fields, content))
            yield lines
            await lines.drain()  # only when the caller is done with it, not on an error
        finally:
            self._release(conn, reuse=lines.complete and _keeps_alive(fields))

    async def _send(
        self, path: str, body: bytes
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], int, dict[str, str]]:
        """Send a request on a pooled or new connection; the status and headers it got.

        The caller bounds it with its read timeout; a connection cut short is closed.
        """
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while True:
            reused = False
            while self.idle:
                conn = self.idle.pop()
                if not conn[1].is_closing() and not conn[0].at_eof():
                    reused = True
                    break
                conn[1].close()
            if not reused:
                conn = await self._connect()
            try:
                conn[1].write(request)
                status, fields = _parse_head(await conn[0].readuntil(b"\r\n\r\n"))
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn[1].close()
                if reused and not getattr(exc, "partial", b""):
                    continue  # the upstream had closed this idle connection: use a fresh one
                message = f"the upstream broke the connection: {exc!r}"
                raise httpx.RemoteProtocolError(message) from None
            except (ValueError, asyncio.LimitOverrunError) as exc:
                conn[1].close()
                raise httpx.RemoteProtocolError(f"the upstream sent bad HTTP: {exc!r}") from None
            except BaseException:
                conn[1].close()
                raise
            return conn, status, fields

    def _release(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], *, reuse: bool
    ) -> None:
        if reuse and len(self.idle) < self.KEEP:
            self.idle.append(conn)
        else:
            conn[1].close()

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for _, writer in idle:
            # A pool made on another loop that is gone (the job worker's): nothing to flush.
            with contextlib.suppress(RuntimeError):
                writer.close()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names in lower case) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise httpx.RemoteProtocolError(f"not an HTTP response: {lines[0][:100]!r}") from None
    fields = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return status, fields


@contextlib.contextmanager
def _read_errors(timed_out: str) -> Iterator[None]:
    """A failed read as httpx's exceptions, which the provider translates in one place."""
    try:
        yield
    except TimeoutError:
        raise httpx.ReadTimeout(timed_out) from None
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or f"the connection broke: {exc!r}") from None
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise httpx.RemoteProtocolError(f"the upstream sent bad HTTP: {exc!r}") from None


def _keeps_alive(fields: dict[str, str]) -> bool:
    framed = "content-length" in fields or "chunked" in fields.get("transfer-encoding", "")
    return framed and fields.get("connection", "").lower() != "close"


async def _read_body(reader: asyncio.StreamReader, fields: dict[str, str]) -> bytes:
    if "content-length" in fields:
        return await reader.readexactly(int(fields["content-length"]))
    if "chunked" in fields.get("transfer-encoding", "").lower():
        parts = []
        while part := await _read_chunk(reader):
            parts.append(part)
        return b"".join(parts)
    return await reader.read()


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    """The next chunk of a chunked body; b"" at its end (trailer consumed)."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("the connection was closed before the answer's end")
    size = int(line.split(b";")[0], 16)
    if size == 0:
        await reader.readuntil(b"\r\n")
        return b""
    return (await reader.readexactly(size + 2))[:-2]


class _Lines:
    """The lines of a response body as they arrive; `complete` once all of it was read."""

    def __init__(self, reader: asyncio.StreamReader, fields: dict[str, str], timeout: float):
        self.reader = reader
        self.timeout = timeout
        self.chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        self.left = int(fields.get("content-length", -1))  # -1: until the connection closes
        self.pending = b""
        self.complete = False

    async def __aiter__(self) -> AsyncIterator[str]:
        while not self.complete:
            with _read_errors("the upstream stopped sending"):
                async with timeouts.timeout(self.timeout):
                    data = await self._read()
            if not data:
                self.complete = True
                break
            self.pending += data
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode()
        if self.pending:
            yield self.pending.rstrip(b"\r").decode()
            self.pending = b""

    async def _read(self) -> bytes:
        if self.chunked:
            return await _read_chunk(self.reader)
        if self.left < 0:
            return await self.reader.read(65536)
        data = await self.reader.read(min(self.left, 65536)) if self.left else b""
        self.left -= len(data)
        return data

    async def drain(self, within: float = 0.05) -> None:
        """Read what is left after the last event (the end of the chunked body), so that
        the connection can be reused; an upstream slow to end it only costs its reuse."""
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with timeouts.timeout(within):
                async for _ in self:
                    pass


class _Reply:
    """The few parts of an HTTP response the pool's callers read (an httpx.Response costs
    more CPU to build than the rest of a fast call)."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers  # names in lower case
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return orjson.loads(self.content)


def _encode(body: dict[str, Any]) -> bytes:
    """A request body as JSON: orjson, several times faster than json on every call, and
    json for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body).encode()


def _json(raw: bytes | str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"The upstream sent something that is not JSON: {raw[:200]!r}"
        ) from None
    if not isinstance(value, dict):
        raise UpstreamError("The upstream sent JSON that is not an object.")
    return value


def _status_error(response: httpx.Response | _Reply) -> LLMDeckError:
    """Translate an upstream HTTP error into our error tree."""
    try:
        error = response.json()["error"]
        message, param, code = error["message"], error.get("param"), error.get("code")
    except Exception:
        message, param, code = response.text[:500] or response.reason_phrase, None, None
    status = response.status_code
    if status in (400, 404, 413, 422):
        # The upstream's param and code go on: clients branch on them
        # (context_length_exceeded, unsupported_parameter, ...).
        return InvalidRequest(
            f"The upstream refused the request: {message}",
            param=param if isinstance(param, str) else None,
            code=code if isinstance(code, str) else None,
        )
    if status == 429:
        retry_after = response.headers.get("retry-after")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return RateLimited(f"The upstream is rate limiting: {message}", retry_after=seconds)
    if status in (401, 403):
        return UpstreamRejected(
            f"The upstream rejected llmdeck's credentials ({status}): {sentence(message)} "
            "Check the model's API key."
        )
    return UpstreamError(f"The upstream failed with HTTP {status}: {message}")


def plugin(hub) -> None:
    hub.providers.register(OpenAICompatibleProvider.name, OpenAICompatibleProvider)
