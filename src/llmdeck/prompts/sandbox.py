"""The bounded Jinja2 sandbox prompt templates render in: a cap on the work a render does
and on the size of what it builds (prompts/rendering.py is its one user).

Prompt templates are written by any builder and rendered on the gateway's request path, so a
render must end quickly whatever the template says. The sandbox alone blocks unsafe attribute
access but not `{% for %}` over `range(10**5)` twice nested, `'a' * 10**9`, or a macro that
calls itself twice per level. `BoundedEnvironment` adds, per render, a step budget
(sandbox_budget.py), a size cap (sandbox_sizes.py), both enforced by wrapping what a template
can run (sandbox_metering.py), a nesting cap on calls (`MAX_DEPTH`), and no
`include`/`import`/`extends` (refused when a version is pushed, since pushing parses it).
"""

from __future__ import annotations

import types
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment

from llmdeck.prompts.sandbox_budget import (
    CHARS_PER_STEP,
    MACRO_STEPS,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_SIZE,
    TOO_BIG,
    TOO_DEEP,
    TOO_LONG_NUMBER,
    Budget,
    charge,
    current_budget,
    limit_error,
    render_budget,
)
from llmdeck.prompts.sandbox_metering import (
    BOUNDED_GLOBALS,
    METERING_FILTERS,
    Metering,
    guard_filter,
    guard_test,
    steps,
)
from llmdeck.prompts.sandbox_sizes import (
    checked,
    format_size,
    ints,
    method_size,
    printf_size,
    refuse_over,
    weight,
)

NO_INCLUDES = (
    "The template includes, imports or extends another template (line {line}), which prompts "
    "cannot do; put that text in the prompt itself."
)


class Unsupported(TemplateSyntaxError):
    pass


_CALL_VARS = ("_loop_vars", "_block_vars")  # scope the compiler passes along, not arguments


class BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(finalize=checked, **kwargs)
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(METERING_FILTERS)
        self.tests = {name: guard_test(f) for name, f in self.tests.items()}
        self.globals.update(BOUNDED_GLOBALS)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            raise Unsupported(NO_INCLUDES.format(line=node.lineno), node.lineno, name, filename)
        return tree

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(Metering().visit(source), *args, **kwargs)

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
                refuse_over(weight(seq) * max(count, 0))
        elif operator == "+":
            refuse_over(weight(left) + weight(right))
        elif operator == "%" and isinstance(left, str):
            refuse_over(printf_size(left, right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = current_budget()
        values = (*args, *(v for k, v in kwargs.items() if k not in _CALL_VARS))
        # A macro call (or a recursive loop's `loop(...)`) runs ~20 times as much Python
        # as a loop iteration: it costs MACRO_STEPS, so the budget is time-like for both.
        cost = MACRO_STEPS if isinstance(__obj, Macro | LoopContext) else 1
        charge(cost + sum(map(weight, values)) // CHARS_PER_STEP)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (steps(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, types.BuiltinMethodType) and not isinstance(owner, types.ModuleType):
            # A width, fill or length (center, ljust, zfill, expandtabs, to_bytes...).
            if isinstance(owner, str | bytes | int) and any(n > MAX_SIZE for n in ints(*values)):
                raise limit_error(TOO_BIG)
            if __obj.__name__ == "join" and args and not isinstance(args[0], list | tuple):
                args = ([*steps(args[0])], *args[1:])
            if isinstance(owner, str):
                refuse_over(method_size(__obj, owner, args, kwargs))
        wrapped = getattr(__obj, "__wrapped__", None)  # the sandbox's safe str.format
        if getattr(wrapped, "__name__", None) in ("format", "format_map"):
            spec = wrapped.__self__
            if isinstance(spec, str):
                fields = kwargs if wrapped.__name__ == "format" else (args[0] if args else {})
                refuse_over(format_size(spec, args if fields is kwargs else (), fields))
        budget.depth += 1
        try:
            if budget.depth > MAX_DEPTH:
                raise limit_error(TOO_DEEP)
            return checked(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1


def render(environment: BoundedEnvironment, template: Any, variables: dict[str, Any]) -> str:
    """Render a template of `environment` within the budget and the size cap.

    What Template.generate() does, less a generator layer per chunk: stream the chunks,
    stop once past the cap, and on an error rewrite the traceback to template lines.
    """
    token = render_budget.set(Budget())
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
        render_budget.reset(token)
