"""Feedback from the SDK: a score, a thumb or a comment on a trace."""

from __future__ import annotations

import logging

from llmdeck.sdk import tracer

log = logging.getLogger("llmdeck.sdk")


def feedback(
    trace_id: str | None = None,
    *,
    score: float | None = None,
    thumbs: str | bool | None = None,
    comment: str | None = None,
    name: str = "user",
    author: str | None = None,
) -> bool:
    """Attach a score from 0 to 1, or a thumb, and/or a comment to a trace (default: the
    current one).

    True once the server has stored it; False (with the reason logged) when it could not be
    sent or was refused. Giving both a score and a thumb raises ValueError: each feedback is
    one value (send a second feedback for the other).
    """
    if score is not None and thumbs is not None:
        raise ValueError(
            "llmdeck.feedback takes a score or thumbs, not both: each feedback is one value. "
            "Send a second feedback for the other."
        )
    exporter = tracer.exporter()
    trace_id = trace_id or tracer.current_trace_id()
    if exporter is None or trace_id is None:
        log.warning("llmdeck: feedback needs llmdeck.configure() and a trace id")
        return False
    if isinstance(thumbs, bool):
        thumbs = "up" if thumbs else "down"
    body = {
        "name": name,
        "score": score,
        "thumbs": thumbs,
        "comment": comment,
        "author": author,
        "source": "sdk",
    }
    try:
        import httpx

        headers = {k: v for k, v in exporter.headers.items() if k != "Content-Type"}
        response = httpx.post(
            f"{exporter.base_url}/api/traces/{trace_id}/feedback",
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
            timeout=10,
        )
        if response.status_code >= 300:
            log.warning("llmdeck: feedback refused: %s %s", response.status_code, response.text)
            return False
        return True
    except Exception as exc:
        log.warning("llmdeck: sending feedback failed: %s", exc)
        return False
