"""The llmdeck Python SDK: `observe`, automatic `openai` spans, sessions, users, tags, feedback.

    import llmdeck
    llmdeck.configure(base_url="http://127.0.0.1:8000", api_key="ldk-...")
    llmdeck.instrument_openai()

    @llmdeck.observe
    def answer(question): ...

Spans go to the server's `/v1/traces` (OTLP JSON) in batches from a background thread.
"""

from llmdeck.sdk.feedback import feedback
from llmdeck.sdk.openai_patch import instrument_openai, uninstrument_openai
from llmdeck.sdk.tracer import (
    configure,
    context,
    current_span,
    current_trace_id,
    flush,
    observe,
)

__all__ = [
    "configure",
    "context",
    "current_span",
    "current_trace_id",
    "feedback",
    "flush",
    "instrument_openai",
    "observe",
    "uninstrument_openai",
]
