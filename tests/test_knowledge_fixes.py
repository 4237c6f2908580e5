"""Knowledge-base defects QA found, each checked the way a user meets it: the CLI in-process,
the REST API through the app on both databases."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llmdeck.cli.main import app


def llmdeck(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result, says: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


@pytest.mark.parametrize(
    ("value", "says"),
    [("{bad", "--filter must be a JSON object"), ("[1]", "--filter must be a JSON object")],
)
def test_kb_search_refuses_a_filter_that_is_not_a_json_object(db, value: str, says: str) -> None:
    one_error_line(llmdeck("kb", "search", "support", "hello", "--filter", value), says)
