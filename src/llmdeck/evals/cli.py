"""CLI of evaluation: `llmdeck eval run|resume|list|compare|pairwise|review ...` and
`llmdeck datasets ...`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from llmdeck.cli.output import console, db_session, emit, errors, fail_cleanly, validated
from llmdeck.core.errors import Conflict, NotFound
from llmdeck.core.settings import get_settings
from llmdeck.evals import background, dataset_files, gate, service
from llmdeck.evals import datasets as ds
from llmdeck.evals.review_cli import review
from llmdeck.evals.runner import run_experiment
from llmdeck.evals.schemas import DatasetCreate
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime

evals = typer.Typer(help="Experiments, metrics and the CI gate.", no_args_is_help=True)
datasets = typer.Typer(help="Versioned evaluation datasets.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
PROJECT = typer.Option("default", help="Project to act in.")
evals.add_typer(review, name="review")


def _project_id(session, name: str) -> str:
    return identity.get_project_by_name_or_raise(session, name=name).id


def _bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    )


@evals.command("run")
def eval_run(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="An eval YAML file."),
    fail_under: list[str] = typer.Option(
        [], "--fail-under", help="METRIC=THRESHOLD; exit 1 when the mean is below. Repeatable."
    ),
    max_errors: int | None = typer.Option(
        None,
        "--max-errors",
        min=0,
        help="Items allowed to error (the target failed) before the run fails. "
        "Default: the config's max_errors, else 0.",
    ),
    junit: Path | None = typer.Option(None, help="Write a JUnit XML report here."),
    json_out: Path | None = typer.Option(None, "--json-out", help="Write a JSON report here."),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Run an evaluation from YAML, print a table, and fail when a threshold fails or an
    item errors (beyond --max-errors)."""
    with fail_cleanly():
        loaded = gate.load_config(config)
        thresholds = gate.parse_thresholds(fail_under)
        # A misspelt metric is refused now, not after the whole run.
        gate.check_thresholds(loaded, {**(loaded.get("thresholds") or {}), **thresholds})
        gate.max_errors_of(loaded, max_errors)

        async def go():
            runtime = Runtime.start(get_settings())
            try:
                with _bar() as bar:
                    task = bar.add_task("evaluating", total=None)
                    return await gate.run_config(
                        runtime,
                        loaded,
                        project=project,
                        fail_under=thresholds,
                        max_errors=max_errors,
                        progress=lambda done, total: bar.update(task, completed=done, total=total),
                    )
            finally:
                await runtime.stop()

        result = asyncio.run(go())
    gate.write_reports(result, junit=junit, json_path=json_out)
    _report(result, as_json)
    if not result.passed:
        for failure in result.failures:
            errors.print(f"[red]FAIL[/red] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _report(result: gate.GateResult, as_json: bool) -> None:
    if as_json:
        import json
        import sys

        json.dump(result.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    e = result.experiment
    emit(
        result.table(),
        ["metric", "score", "threshold", "result"],
        as_json=False,
        title=f"{e.name} · {e.dataset} v{e.dataset_version} · {e.completed}/{e.total} items",
    )
    s = e.summary
    console.print(
        f"experiment {e.id} · errors {s.get('errors')} · p50 {s.get('latency_ms_p50') or 0:.0f} ms"
        f" · cost ${s.get('cost') or 0:.6f}",
        highlight=False,
    )
    for line in result.error_lines():
        errors.print(line, highlight=False, soft_wrap=True, markup=False)


@evals.command("resume")
def eval_resume(
    experiment_id: str = typer.Argument(..., help="Experiment id (or a unique prefix, 6+)."),
    project: str = PROJECT,
) -> None:
    """Finish an interrupted experiment; items already done are skipped."""
    with fail_cleanly():

        async def go():
            runtime = Runtime.start(get_settings())
            try:
                with runtime.db.session() as session:
                    p = identity.get_project_by_name_or_raise(session, name=project)
                    experiment = service.get_or_raise(
                        session, project_id=p.id, experiment_id=experiment_id
                    )
                    if background.active_job(session, experiment=experiment) is not None:
                        raise Conflict(
                            "A server is running this experiment as a job; watch it with "
                            f"`llmdeck eval list` or at /experiments/{experiment.id}."
                        )
                    full_id = experiment.id  # the id prefix given, resolved
                principal = Principal(project_id=p.id, project_name=p.name, role="admin")
                with _bar() as bar:
                    task = bar.add_task("resuming", total=None)
                    await run_experiment(
                        runtime,
                        principal,
                        full_id,
                        progress=lambda d, t: bar.update(task, completed=d, total=t),
                    )
                return gate.gate(runtime, principal, full_id, {})
            finally:
                await runtime.stop()

        _report(asyncio.run(go()), False)


@evals.command("list")
def eval_list(project: str = PROJECT, as_json: bool = JSON) -> None:
    """Recent experiments."""
    with db_session() as session:
        pid = _project_id(session, project)
        rows = [
            service.to_public(session, e).model_dump()
            for e in service.list(session, project_id=pid)
        ]
    for row in rows:
        row["scores"] = ", ".join(
            f"{k}={v:.3f}" for k, v in row["summary"].get("metrics", {}).items() if v is not None
        )
    if as_json:
        emit(rows, [], as_json=True)
        return
    # Ids in full (ULIDs are 26 characters): what `compare` and `resume` take, copied as
    # shown; the other columns wrap instead.
    table = Table()
    table.add_column("id", no_wrap=True, min_width=26)
    columns = ["name", "dataset", "status", "completed", "total", "scores"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], *["-" if row[c] in (None, "") else str(row[c]) for c in columns])
    console.print(table)


@evals.command("compare")
def eval_compare(
    experiment_ids: list[str] = typer.Argument(
        ..., help="Two or more experiment ids (or unique prefixes of 6+ characters)."
    ),
    items: bool = typer.Option(False, help="Also show each item's outputs."),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Experiments side by side, per metric (and per item with --items)."""
    with db_session() as session:
        result = service.compare(
            session, project_id=_project_id(session, project), experiment_ids=experiment_ids
        )
    if as_json:
        emit([result.model_dump(mode="json")], [], as_json=True)
        return
    names = {e.id: f"{e.name} ({e.id[-6:]})" for e in result.experiments}
    rows = [
        {"metric": m, **{names[k]: v for k, v in result.summary[m].items()}} for m in result.metrics
    ]
    emit(rows, ["metric", *names.values()], as_json=False, title="per metric")
    if items:
        item_rows = []
        for item in result.items:
            row = {"item": str(item["input"])[:40]}
            for eid, label in names.items():
                run = item["runs"].get(eid, {})
                scores = " ".join(f"{k}={v}" for k, v in (run.get("scores") or {}).items())
                row[label] = f"{(run.get('output') or run.get('error') or '')[:40]} [{scores}]"
            item_rows.append(row)
        emit(item_rows, ["item", *names.values()], as_json=False, title="per item")


@evals.command("pairwise")
def eval_pairwise(
    a: str = typer.Argument(..., help="Experiment A."),
    b: str = typer.Argument(..., help="Experiment B."),
    judge: str = typer.Option("smollm2-135m", help="Judge model alias."),
    limit: int | None = typer.Option(None, help="Judge only the first N items."),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """A/B two experiments with an LLM judge, each pair asked in both orders."""
    from llmdeck.evals.judges import pairwise_experiments

    async def go():
        runtime = Runtime.start(get_settings())
        try:
            with runtime.db.session() as session:
                p = identity.get_project_by_name_or_raise(session, name=project)
            principal = Principal(project_id=p.id, project_name=p.name, role="admin")
            return await pairwise_experiments(runtime, principal, a, b, model=judge, limit=limit)
        finally:
            await runtime.stop()

    with fail_cleanly():
        result = asyncio.run(go())
    if as_json:
        emit([result], [], as_json=True)
        return
    emit(result["verdicts"], ["item_id", "winner", "explanation"], as_json=False)
    console.print(
        f"A wins {result['a_wins']}, B wins {result['b_wins']}, ties {result['ties']} · "
        f"A win rate {result['a_win_rate']:.2f} (judge {judge})",
        highlight=False,
    )


@datasets.command("list")
def datasets_list(project: str = PROJECT, as_json: bool = JSON) -> None:
    """Datasets with their current version and size."""
    with db_session() as session:
        pid = _project_id(session, project)
        rows = [ds.to_public(session, d).model_dump() for d in ds.list(session, project_id=pid)]
    emit(rows, ["name", "version", "item_count", "description"], as_json=as_json)


@datasets.command("create")
def datasets_create(
    name: str,
    description: str = typer.Option("", help="What the dataset is for."),
    project: str = PROJECT,
) -> None:
    """Create an empty dataset (version 0); `import` and `add-traces` add items."""
    data = validated(DatasetCreate, name=name, description=description)
    with db_session() as session:
        ds.create(
            session,
            project_id=_project_id(session, project),
            name=data.name,
            description=data.description,
        )
    console.print(f"Created dataset [bold]{name}[/bold] in project {project}.")


@datasets.command("import")
def datasets_import(
    name: str,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .csv or .jsonl file."),
    project: str = PROJECT,
) -> None:
    """Add a file's items as a new version (creating the dataset if needed).

    Rows already in the dataset are skipped; when none is new, no version is made."""
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    with db_session() as session:
        imported = dataset_files.import_items(
            session,
            project_id=_project_id(session, project),
            name=name,
            text=path.read_text(encoding="utf-8-sig"),
            fmt=fmt,
        )
        version = imported.dataset.version
    state = "is now" if imported.added else "stays at"
    # soft_wrap: one line however long, as CI logs and `grep` expect.
    console.print(
        f"Dataset [bold]{name}[/bold] {state} version {version}: {imported.summary}.",
        soft_wrap=True,
    )


@datasets.command("add-traces")
def datasets_add_traces(
    name: str,
    trace_ids: list[str] = typer.Argument(..., help="Trace ids, as `llmdeck traces list` shows."),
    create: bool = typer.Option(
        False, "--create", help="Make the dataset if it is missing (by default that is an error)."
    ),
    expected: bool = typer.Option(
        True, "--expected/--no-expected", help="Use each answer as the expected output."
    ),
    project: str = PROJECT,
) -> None:
    """Add recorded requests as items of a new version (input, answer, trace id and model).

    Requests already in the dataset are skipped; when none is new, no version is made.

    The dataset must exist (`llmdeck datasets create NAME`) unless --create is given, so
    that a mistyped name does not quietly start a new dataset."""
    with db_session() as session:
        pid = _project_id(session, project)
        missing = ds.get_by_name(session, project_id=pid, name=name) is None
        if missing and not create:
            raise NotFound(
                f"No dataset named {name!r} in project {project}. Run "
                f"`llmdeck datasets create {name}` first, or add --create.",
                param="dataset",
            )
        result = ds.add_traces(
            session,
            project_id=pid,
            name=name,
            trace_ids=trace_ids,
            use_output_as_expected=expected,
            create_missing=create,
        )
        version, made = result.dataset.version, result.dataset.name
    if missing:
        console.print(f"Created dataset [bold]{made}[/bold].")
    state = "is now" if result.added else "stays at"
    # The same words as `llmdeck datasets import`, on one line.
    console.print(
        f"Dataset [bold]{made}[/bold] {state} version {version}: {result.summary}.",
        soft_wrap=True,
    )


@datasets.command("export")
def datasets_export(
    name: str,
    format: str = typer.Option("jsonl", help="csv or jsonl."),
    version: int | None = typer.Option(None, help="Default: the current version."),
    project: str = PROJECT,
) -> None:
    """Print a version's items as CSV or JSONL."""
    with db_session() as session:
        dataset = ds.get_by_name_or_raise(
            session, project_id=_project_id(session, project), name=name
        )
        text = dataset_files.dump(ds.items(session, dataset=dataset, version=version), format)
    typer.echo(text, nl=False)
