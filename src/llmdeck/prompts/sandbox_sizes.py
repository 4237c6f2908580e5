"""Sizes of the values a prompt template builds, held under `MAX_SIZE`.

`+ * % **`, `~`, slicing, calls and filters refuse a result past the cap, checked *before*
the C-level operation where one small argument can amplify (`'a' * n`, `center(n)`, `'%*d'`,
`join`, `replace`...): the functions here give an upper bound on such a result from its
arguments. Sizing a value is work too, charged to the step budget.
"""

from __future__ import annotations

import re
import string
from typing import Any

from jinja2.utils import Namespace

from llmdeck.prompts.sandbox_budget import (
    CHARS_PER_STEP,
    MAX_SIZE,
    NODES_PER_STEP,
    TOO_BIG,
    TOO_MANY_STEPS,
    charge,
    current_budget,
    limit_error,
)

VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, *VIEWS)


def _scalar_weight(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 1
    if isinstance(value, bytes | bytearray):
        return len(value) * 4
    return 16  # floats, ranges, macros, undefined... print short


def weight(value: Any, indent: int = 0) -> int:
    """About how many characters `str(value)` has (pretty-printed with `indent`), counting
    no further than just past MAX_SIZE; charges the walk to the budget."""
    if isinstance(value, str):
        if len(value) >= CHARS_PER_STEP:
            charge(len(value) // CHARS_PER_STEP)
        return len(value)
    if not isinstance(value, CONTAINERS):
        return _scalar_weight(value)
    # Stop as soon as the walk alone would spend the rest of the budget.
    most = current_budget().steps * NODES_PER_STEP
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
        elif isinstance(item, CONTAINERS):
            if isinstance(item, Namespace):
                item = item._Namespace__attrs  # its repr shows every attribute
            if isinstance(item, dict):
                item = (x for pair in item.items() for x in pair)
            stack.append((iter(item), depth + 1))
        else:
            total += _scalar_weight(item)
    charge(total // CHARS_PER_STEP + visited // NODES_PER_STEP)
    return total


def checked(value: Any) -> Any:
    if value.__class__ is str and len(value) < CHARS_PER_STEP:
        return value  # the common case, kept cheap: this runs for every {{ ... }}
    if weight(value) > MAX_SIZE:
        raise limit_error(TOO_BIG)
    return value


def refuse_over(estimate: int) -> None:
    if estimate > MAX_SIZE:
        raise limit_error(TOO_BIG)


def ints(*values: Any) -> list[int]:
    return [abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def printf_size(fmt: str, args: Any) -> int:
    """An upper bound on `len(fmt % args)`: widths and precisions can pad each field."""
    values = tuple(args.values()) if isinstance(args, dict) else args
    values = values if isinstance(values, tuple) else (values,)
    fields = _PRINTF.findall(fmt)
    widths = [int(n) for field in fields for n in field if n.isdigit()]
    if any("*" in field for field in fields):
        widths += ints(*values)
    widest = max(widths, default=0) + max(map(weight, values), default=0)
    return len(fmt) + len(fields) * widest


def format_size(fmt: str, args: tuple, kwargs: dict) -> int:
    """An upper bound on `len(fmt.format(*args, **kwargs))`."""
    fields = [spec or "" for _, name, spec, _ in string.Formatter().parse(fmt) if name is not None]
    widths = [int(n) for spec in fields for n in re.findall(r"\d+", spec)]
    values = (*args, *kwargs.values())
    if any("{" in spec for spec in fields):
        widths += ints(*values)
    widest = max(widths, default=0) + max(map(weight, values), default=0)
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
FILTER_SIZES: dict[str, Any] = {
    "center": lambda value, width=80: max([weight(value), *ints(width)]),
    "indent": lambda s, width=4, first=False, blank=False: (
        weight(s) + (str(s).count("\n") + 1) * (width if isinstance(width, int) else len(width))
    ),
    "wordwrap": lambda s, width=79, long=True, wrapstring=None, hyphens=True: (
        # Each break replaces one whitespace character or splits a word at `width`.
        len(str(s)) * 2 + (len(str(s)) // 2 + 1) * len(wrapstring or "")
    ),
    "replace": _replace_size,
    "join": lambda value, d="", attribute=None: weight(value) + len(value) * len(str(d)),
    "format": lambda value, *args, **kwargs: printf_size(str(value), kwargs or args),
    "batch": lambda value, linecount, fill_with=None: (
        weight(value) + (linecount * (2 + weight(fill_with)) if fill_with is not None else 0)
    ),
    "slice": lambda value, slices, fill_with=None: weight(value) + slices * (4 + weight(fill_with)),
    "tojson": lambda value, indent=None: weight(value, indent if isinstance(indent, int) else 0),
    "pprint": lambda value: weight(value, 1),
    "urlize": lambda value, trim=None, nofollow=False, target=None, rel=None, schemes=None: (
        len(str(value)) * 3 + (len(str(value)) // 4 + 1) * (len(target or "") + len(rel or ""))
    ),
}


def method_size(obj: Any, owner: Any, args: tuple, kwargs: dict) -> int:
    """An upper bound on what a builtin method of a str returns, where one argument can make
    it far larger than the str (other builtin methods grow their receiver by their arguments,
    which are bounded, or are refused for an int argument past the cap)."""
    name = obj.__name__
    if name == "join":
        return weight(args[0]) + len(owner) * len(args[0])
    if name == "replace":
        return _replace_size(owner, *args)
    if name == "expandtabs":
        return len(owner) + owner.count("\t") * (args[0] if args else kwargs.get("tabsize", 8))
    if name == "translate" and args and isinstance(args[0], dict):
        return len(owner) * (1 + max(map(weight, args[0].values()), default=0))
    return 0
