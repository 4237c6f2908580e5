"""The CI gate: run an evaluation from a YAML config, check thresholds, write JUnit and JSON.

    name: smoke
    dataset: {name: qa, file: qa.jsonl}      # or a dataset name already in the project
    target: {type: prompt, prompt: "support@staging"}
    metrics: [exact_match, {name: rouge_l, as: rouge}]
    concurrency: 8
    thresholds: {exact_match: 0.8}            # --fail-under adds to / overrides these
    max_errors: 0                             # items allowed to error; --max-errors overrides

An item that errors (the target failed: a missing prompt variable, an upstream error) has
no score, so a run with errored items fails the gate unless `max_errors` allows them.

From a test suite, `assert_eval("eval.yaml", fail_under={"exact_match": 0.8})` does the same.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import yaml

from llmdeck.core.errors import InvalidRequest, sentence
from llmdeck.evals import dataset_files, datasets, service
from llmdeck.evals.metrics import spec_name
from llmdeck.evals.runner import Progress, run_experiment
from llmdeck.evals.schemas import ExperimentCreate, ExperimentPublic
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal

REASONS_SHOWN = 3  # errored items whose reason a report quotes


@dataclass
class GateResult:
    experiment: ExperimentPublic
    thresholds: dict[str, float]
    failures: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int | None = 0

    @property
    def passed(self) -> bool:
        return not self.failures and self.experiment.status == "done"

    @property
    def errored(self) -> list[dict[str, Any]]:
        """Results of the items whose target failed (they have no scores)."""
        return [r for r in self.results if r["error"]]

    def error_lines(self) -> list[str]:
        """How many items errored, and the first few reasons."""
        errored = self.errored
        if not errored:
            return []
        lines = [f"{len(errored)} of {len(self.results)} items errored:"]
        lines += [f"  item {r['item_id']}: {r['error']}" for r in errored[:REASONS_SHOWN]]
        if len(errored) > REASONS_SHOWN:
            lines.append(f"  … and {len(errored) - REASONS_SHOWN} more (--json-out lists all).")
        return lines

    def table(self) -> list[dict[str, Any]]:
        metrics = self.experiment.summary.get("metrics", {})
        rows = []
        for name, value in metrics.items():
            limit = self.thresholds.get(name)
            verdict = (
                "-"
                if limit is None
                else ("pass" if value is not None and value >= limit else "FAIL")
            )
            rows.append({"metric": name, "score": value, "threshold": limit, "result": verdict})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failures": self.failures,
            "thresholds": self.thresholds,
            "max_errors": self.max_errors,
            "experiment": self.experiment.model_dump(mode="json"),
            "results": self.results,
        }


def load_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path} is not valid YAML: {sentence(exc)}") from None
    if not isinstance(config, dict):
        raise InvalidRequest(f"{path} must hold a mapping (dataset, target, metrics).")
    config.setdefault("_base", str(path.parent))
    return config


def check_thresholds(config: dict[str, Any], thresholds: dict[str, float]) -> None:
    """Refuse a threshold on a metric the config does not measure, before anything runs."""
    names = [spec_name(spec) for spec in config.get("metrics") or []]
    unknown = [name for name in thresholds if name not in names]
    if unknown:
        raise InvalidRequest(
            f"No metric named {unknown[0]!r} in this config to hold to a threshold; "
            f"its metrics are: {', '.join(names) or 'none'}.",
            param="fail_under",
        )


def max_errors_of(config: dict[str, Any], override: int | None) -> int:
    """Items allowed to error: --max-errors, else the config's `max_errors`, else 0."""
    value = override if override is not None else config.get("max_errors", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"max_errors is a count of items (0 or more), not {value!r}.")
    return value


def parse_thresholds(values: list[str]) -> dict[str, float]:
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InvalidRequest(f"--fail-under takes METRIC=THRESHOLD, not {value!r}.")
    return out


def _dataset(session, project_id: str, config: dict[str, Any]) -> str:
    spec = config.get("dataset")
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, dict) or not spec.get("name"):
        raise InvalidRequest("`dataset` is a name, or a mapping with `name` and `file` or `items`.")
    name = spec["name"]
    if spec.get("file"):
        path = Path(config.get("_base", ".")) / spec["file"]
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        items = dataset_files.parse(path.read_text(encoding="utf-8-sig"), fmt)
    else:
        items = [datasets.ItemCreate.model_validate(i) for i in spec.get("items") or []]
    dataset = datasets.get_by_name(session, project_id=project_id, name=name)
    if dataset is None:
        datasets.create(session, project_id=project_id, name=name, items=items)
        return name
    current = datasets.items(session, dataset=dataset)
    if [(i.input, i.expected) for i in current] != [(i.input, i.expected) for i in items]:
        # The file changed: the dataset gets a new version with exactly its items.
        datasets.change(session, dataset=dataset, add=items, remove=[i.id for i in current])
    return name


async def run_config(
    runtime,
    config: dict[str, Any],
    *,
    project: str = "default",
    fail_under: dict[str, float] | None = None,
    max_errors: int | None = None,
    progress: Progress | None = None,
) -> GateResult:
    thresholds = {**(config.get("thresholds") or {}), **(fail_under or {})}
    check_thresholds(config, thresholds)
    allowed = max_errors_of(config, max_errors)
    with runtime.db.session() as session:
        p = identity.get_project_by_name_or_raise(session, name=project)
        principal = Principal(project_id=p.id, project_name=p.name, role="admin")
        name = _dataset(session, p.id, config)
        experiment = service.create(
            session,
            project_id=p.id,
            data=ExperimentCreate(
                name=str(config.get("name", "")),
                dataset=name,
                target=config.get("target") or {},
                metrics=config.get("metrics") or [],
                concurrency=int(config.get("concurrency", 8)),
            ),
        )
    await run_experiment(runtime, principal, experiment.id, progress=progress)
    return gate(runtime, principal, experiment.id, thresholds, max_errors=allowed)


def gate(
    runtime,
    principal: Principal,
    experiment_id: str,
    thresholds: dict[str, float],
    *,
    max_errors: int | None = 0,
) -> GateResult:
    """Check a finished experiment: thresholds, and errored items (None: errors not checked)."""
    with runtime.db.session() as session:
        experiment = service.get_or_raise(
            session, project_id=principal.project_id, experiment_id=experiment_id
        )
        public = service.to_public(session, experiment)
        rows = service.results(session, experiment=experiment)
        items = service.items_by_id(session, {r.item_id for r in rows})
        results = [
            service.result_public(r, items.get(r.item_id)).model_dump(mode="json") for r in rows
        ]
    metrics = public.summary.get("metrics", {})
    errored = sum(1 for r in results if r["error"])
    failures = []
    for name, limit in thresholds.items():
        if name not in metrics:
            failures.append(f"{name}: no such metric in this run ({', '.join(metrics) or 'none'}).")
        elif metrics[name] is None:
            why = (
                f"every item errored ({errored} of {len(results)})"
                if results and errored == len(results)
                else "no item got a score (see each result's explanation)"
            )
            failures.append(f"{name}: no score to hold to the threshold {limit}: {why}.")
        elif metrics[name] < limit:
            failures.append(f"{name}: {metrics[name]} is under the threshold {limit}.")
    if max_errors is not None and errored > max_errors:
        failures.append(
            f"{errored} of {len(results)} items errored; at most {max_errors} may (--max-errors)."
        )
    if public.status != "done":
        failures.append(
            f"The run ended {public.status}: {sentence(public.error or 'not every item finished')}"
        )
    return GateResult(
        experiment=public,
        thresholds=thresholds,
        failures=failures,
        results=results,
        max_errors=max_errors,
    )


def junit_xml(result: GateResult) -> str:
    """One test case per metric (failed when under its threshold), one per errored item."""
    metrics = result.experiment.summary.get("metrics", {})
    suite = ET.Element(
        "testsuite",
        name=f"llmdeck eval {result.experiment.name}",
        tests=str(len(metrics) + sum(1 for r in result.results if r["error"])),
        failures=str(len(result.failures)),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("id", "dataset", "dataset_version", "status"):
        ET.SubElement(props, "property", name=key, value=str(getattr(result.experiment, key)))
    for name, value in metrics.items():
        case = ET.SubElement(suite, "testcase", classname="llmdeck.eval", name=name)
        limit = result.thresholds.get(name)
        case.set("score", str(value))
        if limit is not None and (value is None or value < limit):
            ET.SubElement(case, "failure", message=f"{name} = {value} < {limit}")
    for name in result.thresholds:
        if name not in metrics:
            case = ET.SubElement(suite, "testcase", classname="llmdeck.eval", name=name)
            ET.SubElement(case, "failure", message=f"{name} was not measured")
    for row in result.results:
        if row["error"]:
            case = ET.SubElement(
                suite, "testcase", classname="llmdeck.eval.item", name=row["item_id"]
            )
            ET.SubElement(case, "error", message=row["error"])
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_reports(result: GateResult, *, junit: Path | None, json_path: Path | None) -> None:
    if junit:
        junit.write_text(junit_xml(result))
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))


def assert_eval(
    config: str | Path | dict[str, Any],
    *,
    fail_under: dict[str, float] | None = None,
    max_errors: int | None = None,
    project: str = "default",
    settings=None,
    junit: Path | None = None,
    json_path: Path | None = None,
) -> GateResult:
    """Run an evaluation inside a test; fail the test (AssertionError) under a threshold."""
    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import Runtime

    loaded = load_config(Path(config)) if not isinstance(config, dict) else config

    async def go() -> GateResult:
        runtime = Runtime.start(settings or get_settings())
        try:
            return await run_config(
                runtime, loaded, project=project, fail_under=fail_under, max_errors=max_errors
            )
        finally:
            await runtime.stop()

    result = asyncio.run(go())
    write_reports(result, junit=junit, json_path=json_path)
    if not result.passed:
        lines = [
            f"{r['metric']}: {r['score']} (threshold {r['threshold']})" for r in result.table()
        ]
        raise AssertionError(
            "Evaluation failed its gate:\n  "
            + "\n  ".join(result.failures + lines + result.error_lines())
        )
    return result
