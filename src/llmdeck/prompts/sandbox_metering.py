"""What meters a prompt template's work: wrappers around Jinja's filters and tests, the
filters and globals the sandbox adds, and the rewrite of a template's AST that routes `for`
loops, `~`, comparisons and slices (work the sandbox cannot see) through those filters.
"""

from __future__ import annotations

from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Undefined, markup_join, str_join
from jinja2.utils import generate_lorem_ipsum, pass_eval_context
from jinja2.visitor import NodeTransformer

from llmdeck.prompts.sandbox_budget import (
    CHARS_PER_STEP,
    MAX_STEPS,
    SLOW_FACTOR,
    SLOW_FILTERS,
    TOO_MANY_STEPS,
    charge,
    current_budget,
    limit_error,
)
from llmdeck.prompts.sandbox_sizes import (
    CONTAINERS,
    FILTER_SIZES,
    VIEWS,
    checked,
    refuse_over,
    weight,
)

_STR_OR_CONTAINER = (str, *CONTAINERS)
_SIZED = (list, tuple, dict, str, range, set, frozenset, *VIEWS)


def steps(iterable: Any) -> Any:
    """The iterable a `for` loop (or a lazy filter's result) walks, one step per item."""
    if isinstance(iterable, _SIZED):
        charge(len(iterable))
        return iterable
    if isinstance(iterable, Undefined):
        return iterable  # iterating it raises the usual "missing variable" error
    return _metered(iterable)


def _metered(iterable: Any) -> Any:
    budget = current_budget()
    for item in iterable:
        budget.steps -= 1
        if budget.steps < 0:
            raise limit_error(TOO_MANY_STEPS)
        yield item


def guard_filter(name: str, func: Any) -> Any:
    size = FILTER_SIZES.get(name)
    extra = SLOW_FACTOR - 1 if name in SLOW_FILTERS else 0
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0  # context/environment first

    @wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same arguments
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip]
        short = value.__class__ is str and len(value) < CHARS_PER_STEP
        charge(1 if short else 1 + extra * weight(value) // CHARS_PER_STEP)
        if name == "join" and not isinstance(args[skip], list | tuple | str):
            args = (*args[:skip], [*steps(args[skip])], *args[skip + 1 :])
        if size is not None:
            refuse_over(size(*args[skip:], **kwargs))
        result = func(*args, **kwargs)
        if isinstance(result, _STR_OR_CONTAINER):
            return checked(result)
        if hasattr(result, "__next__"):  # map, select, batch...: lazy, metered as consumed
            return _metered(result)
        return result

    return guarded


def guard_test(func: Any) -> Any:
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        charge(1 + sum(weight(a) for a in args[skip:]) // CHARS_PER_STEP)
        return func(*args, **kwargs)

    return guarded


def _text(length: int) -> str:
    """Charges a stretch of literal template text (a loop or macro can repeat it)."""
    charge(length // CHARS_PER_STEP)
    return ""


def _weigh(value: Any) -> Any:
    """A comparison's operand or a slice: charged for its size (`in` scans, slices copy)."""
    weight(value)
    return value


@pass_eval_context
def _concat(eval_ctx: Any, values: list[Any]) -> str:
    """`a ~ b`, refused before joining past the cap (str of a container can be huge)."""
    refuse_over(sum(map(weight, values)))
    return markup_join(values) if eval_ctx.autoescape else str_join(values)


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_STEPS:
        raise limit_error(
            f"The template asks for range() of more than {MAX_STEPS:,} numbers; use a smaller one."
        )
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    refuse_over(n * max * 12)
    return generate_lorem_ipsum(n, html, min, max)


# The filters Metering's rewrites call, and the globals that replace Jinja's unbounded ones.
METERING_FILTERS = {
    "_llmdeck_steps": steps,
    "_llmdeck_concat": _concat,
    "_llmdeck_weigh": _weigh,
    "_llmdeck_text": _text,
}
BOUNDED_GLOBALS = {"range": _range, "lipsum": _lipsum}


class Metering(NodeTransformer):
    """Rewrites a template's AST so that the work the sandbox cannot see passes a filter of
    ours: `for` loops (each iteration a step), `~`, comparisons and slices."""

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        text = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        if text >= CHARS_PER_STEP:
            cost = nodes.Filter(nodes.Const(text), "_llmdeck_text", [], [], None, None)
            node.nodes.insert(0, cost.set_lineno(node.lineno))
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "_llmdeck_steps")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.List(node.nodes, lineno=node.lineno), "_llmdeck_concat")

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _filter(node.expr, "_llmdeck_weigh")
        for operand in node.ops:
            operand.expr = _filter(operand.expr, "_llmdeck_weigh")
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "_llmdeck_weigh") if isinstance(node.arg, nodes.Slice) else node


def _filter(node: nodes.Expr, name: str) -> nodes.Expr:
    if isinstance(node, nodes.Const | nodes.TemplateData):
        return node  # bounded by the template's own length
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
