"""Prompt templates render within bounds: a template that would loop, grow or recurse without
end, or that fails, is a quick 400 naming what to change (through render_text, the REST API,
the gateway and the CLI), while ordinary templates render exactly as they always did."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmdeck.core.errors import InvalidRequest
from llmdeck.prompts.rendering import render_text
from tests.test_cli import llmdeck
from tests.test_evals_support import add_model, echo_upstream
from tests.test_gateway_support import running

STEPS = "does more than 100,000 steps"
SIZE = "builds a value longer than 1,000,000 characters"
DEEP = "calls itself too deeply"
INCLUDES = "includes, imports or extends another template"

ATTACKS = {
    "nested loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        STEPS,
    ),
    "loop over a huge variable": (
        "{% for x in big %}{% for y in big %}{% endfor %}{% endfor %}",
        STEPS,
    ),
    "string repetition": ("{{ 'a' * 1000000000 }}", SIZE),
    "list repetition": ("{{ [[1, 2]] * 100000000 }}", SIZE),
    "huge range": ("{{ range(100000000)|list|length }}", "range() of more than 100,000"),
    "include": ("{% include '/etc/passwd' %}", INCLUDES),
    "import": ("{% import 'macros.txt' as m %}{{ m.x() }}", INCLUDES),
    "from import": ("{% from 'macros.txt' import x %}", INCLUDES),
    "extends": ("{% extends 'base.txt' %}", INCLUDES),
    "macro calling itself": ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", DEEP),
    "exponential macro": ("{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(1) }}", DEEP),
    "exponential macro with a stop": (
        "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) ~ f(n + 1) }}{% endif %}{% endmacro %}"
        "{{ f(1) }}",
        STEPS,
    ),
    "concat doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        SIZE,
    ),
    "list doubling": (
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}{{ l|length }}",
        STEPS,
    ),
    "center": ("{{ 'a'|center(1000000000) }}", SIZE),
    "indent": ("{{ ('x\\n' * 500)|indent(100000) }}", SIZE),
    "format width": ("{{ '%999999999d'|format(1) }}", SIZE),
    "format star width": ("{{ '%*d'|format(999999999, 1) }}", SIZE),
    "str.format width": ("{{ '{:>999999999}'.format(1) }}", SIZE),
    "ljust": ("{{ 'a'.ljust(1000000000) }}", SIZE),
    "wordwrap": ("{{ ('a ' * 1000)|wordwrap(1, wrapstring='x' * 10000) }}", SIZE),
    "replace": ("{{ ('ab' * 1000)|replace('', 'x' * 10000) }}", SIZE),
    "join": ("{{ range(10000)|join('x' * 1000) }}", SIZE),
    "batch fill": ("{{ [1]|batch(1000000000, 'x')|list }}", SIZE),
    "lipsum": ("{{ lipsum(1000000) }}", SIZE),
    "huge power": ("{{ 9 ** (9 ** 9) }}", "more than 10,000 digits"),
    "output past the cap": ("{% for i in range(99999) %}{{ 'x' * 20 }}{% endfor %}", SIZE),
    "scan of a large value in a loop": (
        "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{% if 'b' in s %}{% endif %}"
        "{% endfor %}",
        STEPS,
    ),
    "slice copies in a loop": (
        "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{{ s[:1] }}{{ s[1:2] if s[1:] }}"
        "{% endfor %}",
        STEPS,
    ),
    "literal text repeated in a macro": (
        "{% macro m() %}{% for i in range(99000) %}" + "x" * 200 + "{% endfor %}{% endmacro %}"
        "{{ m()|length }}",
        STEPS,
    ),
    "recursive loop": ("{% for x in [1] recursive %}{{ loop([x, x]) }}{% endfor %}", DEEP),
    "deeply nested value": (
        "{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}"
        "{% endfor %}{{ ns.l }}",
        DEEP,
    ),
}


@pytest.mark.parametrize("source, says", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_runaway_template_is_a_quick_400_that_says_what_to_change(source, says) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as refused:
        render_text(source, {"big": list(range(100_000))})
    elapsed = time.perf_counter() - started
    assert refused.value.status_code == 400 and says in refused.value.message
    assert elapsed < 1.0, f"took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "source, says",
    [
        ("{{ 1 / 0 }}", "failed on line 1: ZeroDivisionError: division by zero"),
        ("line one\n{{ 'a' + 1 }}", "failed on line 2: TypeError"),
        ("{{ [1]|sum(start='a') }}", "TypeError"),
        ("{{ 2.0 ** 100000 }}", "OverflowError"),
        ("{{ loop(1) }}", "Missing prompt variable: loop"),
    ],
)
def test_a_failing_template_is_a_400_naming_the_error_and_line(source, says) -> None:
    with pytest.raises(InvalidRequest) as failed:
        render_text(source, {})
    assert failed.value.status_code == 400 and says in failed.value.message


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__ }}", "{% for x in [] %}", "{{ 1 / 0 }}", "{{ x }"],
)
def test_template_errors_end_in_one_full_stop(source) -> None:
    with pytest.raises(InvalidRequest) as failed:
        render_text(source, {})
    assert ".." not in failed.value.message and failed.value.message.endswith(".")


def test_ordinary_templates_render_as_before() -> None:
    examples = [{"q": "2+2?", "a": " 4 "}, {"q": "Capital of France?", "a": "Paris"}]
    few_shot = (
        "{% for ex in examples %}Q{{ loop.index }}: {{ ex.q }}\nA: {{ ex.a|trim }}\n{% endfor %}"
        "{% if tone == 'formal' %}Be formal.{% else %}Be brief.{% endif %}"
    )
    assert render_text(few_shot, {"examples": examples, "tone": "formal"}) == (
        "Q1: 2+2?\nA: 4\nQ2: Capital of France?\nA: Paris\nBe formal."
    )
    macros = "{% macro tag(n, v) %}<{{ n }}>{{ v }}</{{ n }}>{% endmacro %}{{ tag('doc', text) }}"
    assert render_text(macros, {"text": "hi"}) == "<doc>hi</doc>"
    tree = (
        "{% for n in nodes recursive %}{{ n.name }}{% if n.kids %}({{ loop(n.kids) }}){% endif %}"
        "{% endfor %}"
    )
    leaf = {"name": "c", "kids": []}
    nodes = [{"name": "a", "kids": [{"name": "b", "kids": [leaf]}]}, {"name": "d", "kids": []}]
    assert render_text(tree, {"nodes": nodes}) == "a(b(c))d"
    assert (
        render_text(
            "{{ names|join(', ') }} ~ {{ 'x' ~ n ~ 'y' }} ~ {{ text[:3] }} ~ {{ 'b' in text }}",
            {"names": ["ada", "bob"], "n": 1, "text": "abcdef"},
        )
        == "ada, bob ~ x1y ~ abc ~ True"
    )
    assert (
        render_text(
            "{{ '%s has %d'|format(who, n) }} {{ '{}!'.format(who) }} {{ data|tojson }}"
            " {{ (text * 2)|center(10) }}|{{ text|indent(2, first=true) }}",
            {"who": "ada", "n": 3, "data": {"k": [1, 2]}, "text": "ab"},
        )
        == 'ada has 3 ada! {"k": [1, 2]}    abab   |  ab'
    )
    ns = (
        "{% set ns = namespace(total=0) %}{% for x in xs %}{% set ns.total = ns.total + x %}"
        "{% endfor %}{{ ns.total }} {{ xs|select('odd')|list }} {{ xs|map('string')|join }}"
    )
    assert render_text(ns, {"xs": [1, 2, 3]}) == "6 [1, 3] 123"
    numbers = "{{ price * 1000000 }} {{ n * 3000000 }} {{ '%d users'|format(n * 10**9) }}"
    assert render_text(numbers, {"price": 2.5, "n": 2}) == "2500000.0 6000000 2000000000 users"
    # Large but reasonable: a long retrieved context and a thousand-item loop still render.
    context = "lorem ipsum " * 40_000
    assert len(render_text("{{ context|trim }}", {"context": context})) == len(context) - 1
    assert render_text("{% for i in range(1000) %}{{ i }},{% endfor %}", {}).count(",") == 1000


def test_each_render_has_its_own_budget_across_threads() -> None:
    # 60,000 steps each: eight at once all pass only if they do not share one budget.
    source = "{% for i in range(60000) %}{% endfor %}done"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: render_text(source, {}), range(8)))
    assert results == ["done"] * 8
    assert render_text(source, {}) == "done"  # and nothing carries over to the next render


@pytest.fixture
def echo():
    yield from echo_upstream()


def test_api_and_gateway_answer_400_not_500(echo) -> None:
    async def scenario():
        async with running() as gw:
            c = gw.client
            await add_model(c, "echo", echo.url)
            # Includes are refused when a version is pushed, not only when it renders.
            pushed = await c.post(
                "/api/prompts/inc/versions",
                json={"messages": [{"role": "user", "content": "{% include '/etc/passwd' %}"}]},
            )
            assert pushed.status_code == 400 and INCLUDES in pushed.json()["error"]["message"]
            for name, (source, says) in {
                "loops": (ATTACKS["nested loops"][0], STEPS),
                "grows": ("{{ 'a' * 1000000000 }}", SIZE),
                "recurses": (ATTACKS["macro calling itself"][0], DEEP),
                "fails": ("{{ 1 / word }}", "ZeroDivisionError"),
            }.items():
                r = await c.post(
                    f"/api/prompts/{name}/versions",
                    json={
                        "messages": [{"role": "user", "content": source}],
                        "model": "echo",
                        "labels": ["production"],
                    },
                )
                assert r.status_code == 201, r.text
                started = time.perf_counter()
                rendered = await c.post(
                    f"/api/prompts/{name}/render", json={"variables": {"word": 0}}
                )
                assert rendered.status_code == 400, rendered.text
                assert says in rendered.json()["error"]["message"]
                served = await c.post(
                    "/v1/chat/completions",
                    json={
                        "model": f"prompt:{name}",
                        "messages": [{"role": "user", "content": ""}],
                        "prompt_variables": {"word": 0},
                    },
                )
                assert served.status_code == 400, served.text
                error = served.json()["error"]
                assert error["type"] == "invalid_request_error" and says in error["message"]
                assert time.perf_counter() - started < 2.0
            assert echo.requests == []  # nothing reached the upstream

    asyncio.run(scenario())


def test_cli_render_ends_with_one_error_line(tmp_path) -> None:
    spec = tmp_path / "loops.yaml"
    spec.write_text(
        "name: loops\nmessages:\n  - role: user\n    content: >-\n      "
        + ATTACKS["nested loops"][0]
        + "\n"
    )
    assert llmdeck("prompts", "push", str(spec)).returncode == 0
    result = llmdeck("prompts", "render", "loops")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and STEPS in lines[0], lines


def test_a_missing_variable_names_the_cli_option_too(tmp_path) -> None:
    spec = tmp_path / "greet.yaml"
    spec.write_text("name: greet\nmessages:\n  - role: user\n    content: Hi {{ who }}\n")
    assert llmdeck("prompts", "push", str(spec)).returncode == 0
    result = llmdeck("prompts", "render", "greet")
    assert result.returncode == 1 and "Missing prompt variable: who" in result.stderr
    assert "`--var NAME=VALUE` (CLI)" in result.stderr
    assert llmdeck("prompts", "render", "greet", "--var", "who=Ada").returncode == 0
