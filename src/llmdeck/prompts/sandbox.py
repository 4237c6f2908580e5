"""The bounded Jinja2 sandbox prompt templates render in: a cap on the work a render does
and on the size of what it builds (prompts/rendering.py is its one user).

Prompt templates are written by any builder and rendered on the gateway's request path, so a
render must end quickly whatever the template says. The sandbox alone blocks unsafe attribute
access but not `{% for %}` over `range(10**5)` twice nested, `'a' * 10**9`, or a macro that
calls itself twice per level. `BoundedEnvironment` adds, per render (state in a ContextVar,
so concurrent renders on threads or tasks never share it):

- a step budget (`MAX_STEPS`): each loop iteration, call, filter and test costs a step, and
  any value a step touches costs one more per `CHARS_PER_STEP` characters of it, so neither
  many cheap steps nor a few steps over large values run long;
- a size cap (`MAX_SIZE`): `+ * % **`, `~`, slicing, calls and filters refuse a result past it,
  checked *before* the C-level operation where one small argument can amplify (`'a' * n`,
  `center(n)`, `'%*d'`, `join`, `replace`...), and the output stops once it passes it;
- a nesting cap on calls (`MAX_DEPTH`), and no `include`/`import`/`extends` (refused when a
  version is pushed, since pushing parses it).

A limit reached is an `InvalidRequest` (400) saying what to change.
"""

from __future__ import annotations

import re
import string
import types
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.runtime import LoopContext, Macro, Undefined, markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum, pass_eval_context
from jinja2.visitor import NodeTransformer

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
NO_INCLUDES = (
    "The template includes, imports or extends another template (line {line}), which prompts "
    "cannot do; put that text in the prompt itself."
)


def limit_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="messages", code="template_limit")


class _Budget:
    __slots__ = ("steps", "depth")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.depth = 0


_budget: ContextVar[_Budget | None] = ContextVar("llmdeck_template_budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:
        # Outside a render: Jinja's compiler trying to fold a constant. Impossible makes it
        # leave the expression for render time, where it is metered.
        raise nodes.Impossible()
    return budget


def _charge(steps: int) -> None:
    budget = _current()
    budget.steps -= steps
    if budget.steps < 0:
        raise limit_error(TOO_MANY_STEPS)


# --- sizes ------------------------------------------------------------------------------

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, *_VIEWS)
_STR_OR_CONTAINER = (str, *_CONTAINERS)


def _scalar_weight(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 1
    if isinstance(value, bytes | bytearray):
        return len(value) * 4
    return 16  # floats, ranges, macros, undefined... print short


def _weight(value: Any, indent: int = 0) -> int:
    """About how many characters `str(value)` has (pretty-printed with `indent`), counting
    no further than just past MAX_SIZE; charges the walk to the budget."""
    if isinstance(value, str):
        if len(value) >= CHARS_PER_STEP:
            _charge(len(value) // CHARS_PER_STEP)
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return _scalar_weight(value)
    # Stop as soon as the walk alone would spend the rest of the budget.
    most = _current().steps * NODES_PER_STEP
    total, visited, stack = 0, 0, [(iter([value]), 0)]
    while stack and total <= MAX_SIZE:
        visited += 1
        if visited > most:
            raise limit_error(TOO_MANY_STEPS)
        items, depth = stack[-1]
        item = next(items, stack)  # the stack itself as the end marker
        if item is stack:
            stack.pop()
            continue
        total += 2 + indent * depth
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, _CONTAINERS):
            if isinstance(item, Namespace):
                item = item._Namespace__attrs  # its repr shows every attribute
            if isinstance(item, dict):
                item = (x for pair in item.items() for x in pair)
            stack.append((iter(item), depth + 1))
        else:
            total += _scalar_weight(item)
    _charge(total // CHARS_PER_STEP + visited // NODES_PER_STEP)
    return total


def _checked(value: Any) -> Any:
    if value.__class__ is str and len(value) < CHARS_PER_STEP:
        return value  # the common case, kept cheap: this runs for every {{ ... }}
    if _weight(value) > MAX_SIZE:
        raise limit_error(TOO_BIG)
    return value


def _refuse_over(estimate: int) -> None:
    if estimate > MAX_SIZE:
        raise limit_error(TOO_BIG)


def _ints(*values: Any) -> list[int]:
    return [abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _printf_size(fmt: str, args: Any) -> int:
    """An upper bound on `len(fmt % args)`: widths and precisions can pad each field."""
    values = tuple(args.values()) if isinstance(args, dict) else args
    values = values if isinstance(values, tuple) else (values,)
    fields = _PRINTF.findall(fmt)
    widths = [int(n) for field in fields for n in field if n.isdigit()]
    if any("*" in field for field in fields):
        widths += _ints(*values)
    widest = max(widths, default=0) + max(map(_weight, values), default=0)
    return len(fmt) + len(fields) * widest


def _format_size(fmt: str, args: tuple, kwargs: dict) -> int:
    """An upper bound on `len(fmt.format(*args, **kwargs))`."""
    fields = [spec or "" for _, name, spec, _ in string.Formatter().parse(fmt) if name is not None]
    widths = [int(n) for spec in fields for n in re.findall(r"\d+", spec)]
    values = (*args, *kwargs.values())
    if any("{" in spec for spec in fields):
        widths += _ints(*values)
    widest = max(widths, default=0) + max(map(_weight, values), default=0)
    return len(fmt) + len(fields) * widest


def _replace_size(s: Any, old: Any, new: Any, count: Any = None) -> int:
    s, old, new = str(s), str(old), str(new)
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(len(new) - len(old), 0)


# Upper bounds on a filter's output, for the filters whose output one small argument can make
# far larger than their input; the rest are checked after they run (they grow at most a few
# times over). Parameters mirror jinja2.filters, less the context argument.
_FILTER_SIZES: dict[str, Any] = {
    "center": lambda value, width=80: max([_weight(value), *_ints(width)]),
    "indent": lambda s, width=4, first=False, blank=False: (
        _weight(s) + (str(s).count("\n") + 1) * (width if isinstance(width, int) else len(width))
    ),
    "wordwrap": lambda s, width=79, long=True, wrapstring=None, hyphens=True: (
        # Each break replaces one whitespace character or splits a word at `width`.
        len(str(s)) * 2 + (len(str(s)) // 2 + 1) * len(wrapstring or "")
    ),
    "replace": _replace_size,
    "join": lambda value, d="", attribute=None: _weight(value) + len(value) * len(str(d)),
    "format": lambda value, *args, **kwargs: _printf_size(str(value), kwargs or args),
    "batch": lambda value, linecount, fill_with=None: (
        _weight(value) + (linecount * (2 + _weight(fill_with)) if fill_with is not None else 0)
    ),
    "slice": lambda value, slices, fill_with=None: (
        _weight(value) + slices * (4 + _weight(fill_with))
    ),
    "tojson": lambda value, indent=None: _weight(value, indent if isinstance(indent, int) else 0),
    "pprint": lambda value: _weight(value, 1),
    "urlize": lambda value, trim=None, nofollow=False, target=None, rel=None, schemes=None: (
        len(str(value)) * 3 + (len(str(value)) // 4 + 1) * (len(target or "") + len(rel or ""))
    ),
}


_SIZED = (list, tuple, dict, str, range, set, frozenset, *_VIEWS)


def _steps(iterable: Any) -> Any:
    """The iterable a `for` loop (or a lazy filter's result) walks, one step per item."""
    if isinstance(iterable, _SIZED):
        _charge(len(iterable))
        return iterable
    if isinstance(iterable, Undefined):
        return iterable  # iterating it raises the usual "missing variable" error
    return _metered(iterable)


def _metered(iterable: Any) -> Any:
    budget = _current()
    for item in iterable:
        budget.steps -= 1
        if budget.steps < 0:
            raise limit_error(TOO_MANY_STEPS)
        yield item


def _guard_filter(name: str, func: Any) -> Any:
    size = _FILTER_SIZES.get(name)
    extra = SLOW_FACTOR - 1 if name in SLOW_FILTERS else 0
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0  # context/environment first

    @wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same arguments
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip]
        short = value.__class__ is str and len(value) < CHARS_PER_STEP
        _charge(1 if short else 1 + extra * _weight(value) // CHARS_PER_STEP)
        if name == "join" and not isinstance(args[skip], list | tuple | str):
            args = (*args[:skip], [*_steps(args[skip])], *args[skip + 1 :])
        if size is not None:
            _refuse_over(size(*args[skip:], **kwargs))
        result = func(*args, **kwargs)
        if isinstance(result, _STR_OR_CONTAINER):
            return _checked(result)
        if hasattr(result, "__next__"):  # map, select, batch...: lazy, metered as consumed
            return _metered(result)
        return result

    return guarded


def _guard_test(func: Any) -> Any:
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _charge(1 + sum(_weight(a) for a in args[skip:]) // CHARS_PER_STEP)
        return func(*args, **kwargs)

    return guarded


def _text(length: int) -> str:
    """Charges a stretch of literal template text (a loop or macro can repeat it)."""
    _charge(length // CHARS_PER_STEP)
    return ""


def _weigh(value: Any) -> Any:
    """A comparison's operand or a slice: charged for its size (`in` scans, slices copy)."""
    _weight(value)
    return value


@pass_eval_context
def _concat(eval_ctx: Any, values: list[Any]) -> str:
    """`a ~ b`, refused before joining past the cap (str of a container can be huge)."""
    _refuse_over(sum(map(_weight, values)))
    return markup_join(values) if eval_ctx.autoescape else str_join(values)


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_STEPS:
        raise limit_error(
            f"The template asks for range() of more than {MAX_STEPS:,} numbers; use a smaller one."
        )
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    _refuse_over(n * max * 12)
    return generate_lorem_ipsum(n, html, min, max)


def _method_size(obj: Any, owner: Any, args: tuple, kwargs: dict) -> int:
    """An upper bound on what a builtin method of a str returns, where one argument can make
    it far larger than the str (other builtin methods grow their receiver by their arguments,
    which are bounded, or are refused for an int argument past the cap)."""
    name = obj.__name__
    if name == "join":
        return _weight(args[0]) + len(owner) * len(args[0])
    if name == "replace":
        return _replace_size(owner, *args)
    if name == "expandtabs":
        return len(owner) + owner.count("\t") * (args[0] if args else kwargs.get("tabsize", 8))
    if name == "translate" and args and isinstance(args[0], dict):
        return len(owner) * (1 + max(map(_weight, args[0].values()), default=0))
    return 0


class _Metering(NodeTransformer):
    """Rewrites a template's AST so that the work the sandbox cannot see passes a filter of
    ours: `for` loops (each iteration a step), `~`, comparisons and slices."""

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        text = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        if text >= CHARS_PER_STEP:
            charge = nodes.Filter(nodes.Const(text), "_llmdeck_text", [], [], None, None)
            node.nodes.insert(0, charge.set_lineno(node.lineno))
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


class Unsupported(TemplateSyntaxError):
    pass


_CALL_VARS = ("_loop_vars", "_block_vars")  # scope the compiler passes along, not arguments


class BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(finalize=_checked, **kwargs)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(
            _llmdeck_steps=_steps,
            _llmdeck_concat=_concat,
            _llmdeck_weigh=_weigh,
            _llmdeck_text=_text,
        )
        self.tests = {name: _guard_test(f) for name, f in self.tests.items()}
        self.globals.update(range=_range, lipsum=_lipsum)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            raise Unsupported(NO_INCLUDES.format(line=node.lineno), node.lineno, name, filename)
        return tree

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Metering().visit(source), *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            bits = max(left.bit_length(), right.bit_length())
            if operator == "*":
                bits = left.bit_length() + right.bit_length()
            elif operator == "**" and right > 0 and abs(left) > 1:
                bits = left.bit_length() * right
            if bits * 3 // 10 > MAX_INT_DIGITS:
                raise limit_error(TOO_LONG_NUMBER)
        elif operator == "*":
            count, seq = (right, left) if isinstance(right, int) else (left, right)
            if isinstance(count, int) and isinstance(seq, str | list | tuple):  # repetition
                _refuse_over(_weight(seq) * max(count, 0))
        elif operator == "+":
            _refuse_over(_weight(left) + _weight(right))
        elif operator == "%" and isinstance(left, str):
            _refuse_over(_printf_size(left, right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _current()
        values = (*args, *(v for k, v in kwargs.items() if k not in _CALL_VARS))
        # A macro call (or a recursive loop's `loop(...)`) runs ~20 times as much Python
        # as a loop iteration: it costs MACRO_STEPS, so the budget is time-like for both.
        steps = MACRO_STEPS if isinstance(__obj, Macro | LoopContext) else 1
        _charge(steps + sum(map(_weight, values)) // CHARS_PER_STEP)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (_steps(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, types.BuiltinMethodType) and not isinstance(owner, types.ModuleType):
            # A width, fill or length (center, ljust, zfill, expandtabs, to_bytes...).
            if isinstance(owner, str | bytes | int) and any(n > MAX_SIZE for n in _ints(*values)):
                raise limit_error(TOO_BIG)
            if __obj.__name__ == "join" and args and not isinstance(args[0], list | tuple):
                args = ([*_steps(args[0])], *args[1:])
            if isinstance(owner, str):
                _refuse_over(_method_size(__obj, owner, args, kwargs))
        wrapped = getattr(__obj, "__wrapped__", None)  # the sandbox's safe str.format
        if getattr(wrapped, "__name__", None) in ("format", "format_map"):
            spec = wrapped.__self__
            if isinstance(spec, str):
                fields = kwargs if wrapped.__name__ == "format" else (args[0] if args else {})
                _refuse_over(_format_size(spec, args if fields is kwargs else (), fields))
        budget.depth += 1
        try:
            if budget.depth > MAX_DEPTH:
                raise limit_error(TOO_DEEP)
            return _checked(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1


# Autoescape off: these are chat messages, not HTML. StrictUndefined turns a missing variable
# into an error instead of "".


def render(environment: BoundedEnvironment, template: Any, variables: dict[str, Any]) -> str:
    """Render a template of `environment` within the budget and the size cap.

    What Template.generate() does, less a generator layer per chunk: stream the chunks,
    stop once past the cap, and on an error rewrite the traceback to template lines.
    """
    token = _budget.set(_Budget())
    chunks = template.root_render_func(template.new_context(variables))
    try:
        out, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_SIZE:
                raise limit_error(TOO_BIG)
            out.append(chunk)
        return "".join(out)
    except Exception:
        environment.handle_exception()  # re-raises
    finally:
        chunks.close()
        _budget.reset(token)
