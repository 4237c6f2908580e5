"""llmdeck: an open-source LLMOps platform.

`import llmdeck` stays light: the SDK (`llmdeck.observe`, `llmdeck.configure`, ...) is
imported on first use, and nothing of the server (FastAPI, SQLAlchemy, torch) is.
"""

from typing import Any

__version__ = "0.1.0"

_SDK = frozenset(
    {
        "configure",
        "context",
        "current_span",
        "current_trace_id",
        "feedback",
        "flush",
        "instrument_openai",
        "observe",
        "uninstrument_openai",
    }
)


def __getattr__(name: str) -> Any:
    if name in _SDK:
        from llmdeck import sdk

        value = globals()[name] = getattr(sdk, name)  # later lookups skip this function
        return value
    raise AttributeError(f"module 'llmdeck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SDK])
