"""The limits of a prompt template's render, and its step budget.

Each loop iteration, call, filter and test costs a step, and any value a step touches costs
one more per `CHARS_PER_STEP` characters of it, so neither many cheap steps nor a few steps
over large values run long. The budget lives in a ContextVar, set per render, so concurrent
renders on threads or tasks never share it.

A limit reached is an `InvalidRequest` (400) saying what to change.
"""

from __future__ import annotations

from contextvars import ContextVar

from jinja2 import nodes

from llmdeck.core.errors import InvalidRequest

MAX_STEPS = 100_000
MAX_SIZE = 1_000_000  # characters, of the output and of any value built on the way
CHARS_PER_STEP = 100
NODES_PER_STEP = 2  # walking a container to size it: ~0.3-0.5 us a node
MACRO_STEPS = 10
# Filters that do Python-level work per character or item (~0.1-0.5 us each, where a C-level
# one such as upper does ~1 ns) cost this many times more per CHARS_PER_STEP of input.
SLOW_FILTERS = frozenset(
    [
        "urlize",
        "pprint",
        "wordwrap",
        "title",
        "unique",
        "striptags",
        "wordcount",
        "groupby",
        "sort",
        "dictsort",
        "xmlattr",
        "urlencode",
        "min",
        "max",
        "sum",
    ]
)
SLOW_FACTOR = 10
MAX_DEPTH = 50  # nested calls: well inside Python's own recursion limit
MAX_INT_DIGITS = 10_000

TOO_MANY_STEPS = (
    f"The template does more than {MAX_STEPS:,} steps (loop iterations, calls and work on "
    "large values); simplify it or give it less data."
)
TOO_BIG = (
    f"The template builds a value longer than {MAX_SIZE:,} characters; make its repetition, "
    "padding or joined text smaller."
)
TOO_DEEP = (
    f"The template calls itself too deeply (more than {MAX_DEPTH} nested calls, or values "
    "nested as deep); give its recursion a stopping condition."
)
TOO_LONG_NUMBER = (
    f"The template builds a number with more than {MAX_INT_DIGITS:,} digits; use smaller numbers."
)


def limit_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="messages", code="template_limit")


class Budget:
    __slots__ = ("steps", "depth")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.depth = 0


render_budget: ContextVar[Budget | None] = ContextVar("llmdeck_template_budget", default=None)


def current_budget() -> Budget:
    budget = render_budget.get()
    if budget is None:
        # Outside a render: Jinja's compiler trying to fold a constant. Impossible makes it
        # leave the expression for render time, where it is metered.
        raise nodes.Impossible()
    return budget


def charge(steps: int) -> None:
    budget = current_budget()
    budget.steps -= steps
    if budget.steps < 0:
        raise limit_error(TOO_MANY_STEPS)
