"""The CI gate: `llmdeck eval run CONFIG --fail-under ...` (table, JUnit, JSON, exit code) and
the pytest helper, against a scripted upstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from llmdeck.evals.gate import assert_eval
from tests.conftest import MODEL_CACHE
from tests.test_evals_support import echo_upstream


@pytest.fixture
def echo():
    yield from echo_upstream()


CONFIG = """
name: smoke
dataset:
  name: capitals
  file: capitals.jsonl
target:
  type: model
  model: echo
  messages:
    - {role: user, content: "{{ answer }}"}
  params: {max_tokens: 8}
metrics: [exact_match, {name: contains, as: mentions}]
concurrency: 4
"""


def write_config(tmp_path: Path) -> Path:
    rows = [
        {"input": {"answer": "Paris"}, "expected": "Paris"},
        {"input": {"answer": "Rome"}, "expected": "Rome"},
        {"input": {"answer": "Lyon"}, "expected": "Berlin"},
        {"input": {"answer": "Madrid"}, "expected": "Madrid"},
    ]
    (tmp_path / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "eval.yaml"
    path.write_text(CONFIG)
    return path


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_")}
    env.update(LLMDECK_HOME=str(home), LLMDECK_MODEL_CACHE=str(MODEL_CACHE), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "llmdeck", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_gate_passes_and_fails_on_thresholds(echo, tmp_path) -> None:
    home = tmp_path / "home"
    config = write_config(tmp_path)
    added = cli("models", "add", "echo", "--base-url", echo.url, "--upstream", "m", home=home)
    assert added.returncode == 0, added.stderr
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    passed = cli(
        "eval", "run", str(config), "--fail-under", "exact_match=0.7",
        "--junit", str(junit), "--json-out", str(report), home=home,
    )  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "exact_match" in passed.stdout and "0.75" in passed.stdout and "pass" in passed.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0"
    assert {c.get("name") for c in suite.iter("testcase")} == {"exact_match", "mentions"}
    body = json.loads(report.read_text())
    assert body["passed"] and body["experiment"]["summary"]["metrics"]["exact_match"] == 0.75
    assert len(body["results"]) == 4 and body["results"][0]["scores"]["exact_match"]["explanation"]

    failed = cli(
        "eval", "run", str(config), "--fail-under", "exact_match=0.8",
        "--fail-under", "mentions=0.5", "--junit", str(junit), home=home,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "FAIL" in failed.stdout and "exact_match" in failed.stderr
    failures = [f.get("message") for f in ET.parse(junit).getroot().iter("failure")]
    assert failures == ["exact_match = 0.75 < 0.8"]
    # The unchanged file did not make a new dataset version; both runs are comparable.
    listed = cli("datasets", "list", "--json", home=home)
    assert json.loads(listed.stdout)[0]["version"] == 1
    runs = json.loads(cli("eval", "list", "--json", home=home).stdout)
    compared = cli("eval", "compare", runs[0]["id"], runs[1]["id"], "--items", home=home)
    assert compared.returncode == 0 and "per item" in compared.stdout


def test_pytest_helper(echo, tmp_path) -> None:
    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate
    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import prepare_database

    settings = get_settings()
    with prepare_database(settings).session() as session:
        catalog.create(
            session,
            settings=settings,
            data=ModelCreate(alias="echo", upstream_name="m", base_url=echo.url),
        )
    config = write_config(tmp_path)
    result = assert_eval(config, fail_under={"exact_match": 0.5}, junit=tmp_path / "j.xml")
    assert result.passed and (tmp_path / "j.xml").exists()
    with pytest.raises(AssertionError, match="exact_match: 0.75 is under the threshold 0.9"):
        assert_eval(config, fail_under={"exact_match": 0.9})


def test_cli_gate_fails_when_items_error_and_says_why(echo, tmp_path) -> None:
    home = tmp_path / "home"
    config = write_config(tmp_path)
    config.write_text(CONFIG.replace("{{ answer }}", "{{ country }}"))  # no item has it
    added = cli("models", "add", "echo", "--base-url", echo.url, "--upstream", "m", home=home)
    assert added.returncode == 0, added.stderr

    errored = cli("eval", "run", str(config), home=home)
    assert errored.returncode == 1, errored.stdout + errored.stderr
    assert "4 of 4 items errored:" in errored.stderr
    assert errored.stderr.count("country") >= 3  # the first reasons, each naming the variable
    assert "at most 0 may (--max-errors)" in errored.stderr

    allowed = cli("eval", "run", str(config), "--max-errors", "4", home=home)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "4 of 4 items errored:" in allowed.stderr  # allowed, still reported

    unscored = cli(
        "eval", "run", str(config), "--max-errors", "4", "--fail-under", "exact_match=0.5",
        home=home,
    )  # fmt: skip
    assert unscored.returncode == 1
    assert (
        "exact_match: no score to hold to the threshold 0.5: every item errored (4 of 4)."
        in unscored.stderr
    )
    assert "None is under" not in unscored.stderr

    runs = len(json.loads(cli("eval", "list", "--json", home=home).stdout))
    misspelt = cli("eval", "run", str(config), "--fail-under", "exact_mach=0.5", home=home)
    assert misspelt.returncode == 1
    assert "No metric named 'exact_mach'" in misspelt.stderr
    assert "exact_match, mentions" in misspelt.stderr
    # Refused before anything ran: no new experiment.
    assert len(json.loads(cli("eval", "list", "--json", home=home).stdout)) == runs


def test_pytest_helper_fails_on_errored_items(echo, tmp_path) -> None:
    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate
    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import prepare_database

    settings = get_settings()
    with prepare_database(settings).session() as session:
        catalog.create(
            session,
            settings=settings,
            data=ModelCreate(alias="echo", upstream_name="m", base_url=echo.url),
        )
    config = write_config(tmp_path)
    config.write_text(CONFIG.replace("{{ answer }}", "{{ country }}"))
    with pytest.raises(AssertionError, match="4 of 4 items errored"):
        assert_eval(config)
    assert assert_eval(config, max_errors=4).errored
