"""What a person reads in the Prefect UI after a run: the Markdown report, the metrics table,
the link to the published table. Plain functions build the content; ``publish_artifacts``
(called inside a flow run) creates the artifacts and ``prune_artifacts`` deletes those of old
runs (a night stores some 400 KB, its figures inlined).
"""

import json
from pathlib import Path
from typing import Any

import polars as pl
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from expectations.report import markdown_summary
from nightrec.evaluation.table import DIGITS, margin_warning, metric_table
from nightrec.layout import CURVE_FILE
from nightrec.schema import ITEM_ID, SOURCE, USER_ID


def recommendation_summary(recs_path: Path, clean_path: Path) -> dict[str, Any]:
    """Users, rows, counts by source and catalogue coverage of tonight's table."""
    recs = pl.read_parquet(recs_path)
    catalogue = pl.scan_parquet(clean_path).select(pl.col(ITEM_ID).n_unique()).collect().item()
    recommended = recs.get_column(ITEM_ID).n_unique()
    by_source = dict(recs.group_by(SOURCE).len().sort(SOURCE).iter_rows())
    return {
        "rows": recs.height,
        "users": recs.get_column(USER_ID).n_unique(),
        "by_source": by_source,
        "items_recommended": recommended,
        "catalogue_items": catalogue,
        "coverage": recommended / catalogue if catalogue else 0.0,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    head = list(dict.fromkeys(h for r in rows for h in r))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(r.get(h, "")) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return str(round(value, DIGITS)) if isinstance(value, float) else str(value)


def _figure_md(png: Path | None, alt: str) -> str:
    # Figures stay files beside the run (the Prefect database keeps text, not images); the path is
    # what a person copies, and report.html shows them all.
    if png is None or not png.is_file():
        return ""
    return f"- {alt}: `{png.resolve()}`\n"


def _curve_md(model_dir: str | None) -> str:
    return (
        _figure_md(Path(model_dir) / CURVE_FILE if model_dir else None, "training curve") or "_no training tonight_\n"
    )


def published_markdown(targets: dict[str, str], run_date: str) -> str:
    """Where tonight's table is, as commands a person can paste (a browser cannot open a local file)."""
    lines = [f"# Published recommendations {run_date}\n"]
    query = f"SELECT * FROM recommendations WHERE run_date = DATE '{run_date}' ORDER BY user_id, rank LIMIT 20"
    if "duckdb" in targets:
        db = Path(targets["duckdb"]).resolve()
        lines += [
            f"DuckDB file `{db}` (table `recommendations`, view `recommendations_latest`):\n",
            "```bash",
            f'python -c "import duckdb; print(duckdb.connect(\'{db}\', read_only=True).sql(\\"{query}\\"))"',
            f"nightrec recommend USER_ID --data-dir {db.parent} --run-date {run_date}",
            "```\n",
        ]
    if "parquet" in targets:
        part = Path(targets["parquet"]).resolve()
        lines += [
            f"Parquet partition `{part}`:\n",
            "```bash",
            f"python -c \"import polars as pl; print(pl.read_parquet('{part}'))\"",
            "```\n",
        ]
    if "postgres" in targets:  # "host:port/db schema.table"; the URL itself is never shown
        table = targets["postgres"].rsplit(" ", 1)[-1]
        lines += [
            f"PostgreSQL {targets['postgres']}:\n",
            "```bash",
            f'psql "$NIGHTREC_PUBLISH__POSTGRES_URL" -c "{query.replace("FROM recommendations", f"FROM {table}")}"',
            "```\n",
        ]
    return "\n".join(lines)


STOPPED_BY = {
    "time_budget": "the time budget (train.max_minutes; train.warm_start_max_minutes when warm-started) ended training; the best checkpoint so far is published",
    "early_stopping": "early stopping (no better validation NDCG@10 for train.patience epochs)",
    "max_epochs": "train.epochs reached",
    "closed_form": "a closed-form fit (collaborative filtering: one pass, no epochs)",
}


def training_markdown(candidate: dict[str, Any] | None) -> str:
    """How tonight's training went: objective, epochs, what stopped it."""
    if not candidate or "epochs" not in candidate:
        return "_no training tonight_\n"
    objective = candidate.get("objective") or {}
    stopped = candidate.get("stopped_by")
    selection = candidate.get("selection") or {}
    family = (
        f"Family: {candidate.get('family')} (model.family=auto: the best on validation NDCG@10 of "
        f"{', '.join(selection)}; each candidate's numbers are in the table below).\n\n"
        if selection
        else ""
    )
    return family + (
        f"Objective: {objective.get('loss', '?')} ({objective.get('reason', 'not recorded')}); "
        f"{candidate['epochs']} epochs of {candidate.get('seconds_per_epoch', 0):.1f} s, best epoch "
        f"{candidate.get('best_epoch')}; stopped by {STOPPED_BY.get(stopped, stopped or 'not recorded')}.\n"
        + refit_markdown(candidate.get("refit"))
    )


def refit_markdown(refit: dict[str, Any] | None) -> str:
    """What scores tonight: the validated weights, or them refitted on the held-out transitions."""
    if not refit:
        return ""
    if refit.get("status") != "refit":
        return f"\nServed weights: the validated ones (not refitted: {refit.get('reason')}).\n"
    budget = " (cut short by the training budget)" if refit.get("stopped_by") == "time_budget" else ""
    return (
        f"\nServed weights: {refit.get('how')}{budget}, {refit.get('transitions_added', 0):,} held-out "
        f"transitions added, {refit.get('seconds', 0):.1f} s; the gate judged the validated weights.\n"
    )


def behavior_markdown(behavior: dict[str, Any]) -> str:
    """The behaviour report's summary with the paths of its figures (all shown in report.html)."""
    figures = "".join(_figure_md(Path(path), name.replace("_", " ")) for name, path in behavior["figures"].items())
    return f"{behavior['markdown']}\nFull report: `{behavior['report_html']}`\n\nFigures:\n{figures}"


def build_report(summary: dict[str, Any]) -> str:
    """The run's Markdown report from the flow's result dict."""
    seq_stats = summary.get("sequence_stats") or {}
    flat_stats = [{"stat": k, "value": v} for k, v in seq_stats.items() if isinstance(v, int | float | str)]
    recs = summary["recommendations"]
    sources = [{"source": k, "rows": v} for k, v in recs["by_source"].items()]
    promotion = summary.get("promotion") or {}
    stages = "\n".join(f"- **{name}**: {what}" for name, what in summary["stages"].items())
    return (
        f"# nightrec {summary['flow']} run {summary['run_date']}\n\n"
        + (f"Reason: {summary['reason']}\n\n" if summary.get("reason") else "")
        + f"## Stages\n{stages}\n\n"
        + f"## Data quality\n{markdown_summary(summary['validation'])}\n"
        + f"## Behaviour\n{summary['behavior']['markdown'].split(chr(10), 1)[-1]}\n"
        + f"## Sequences\n{_table(flat_stats)}\n"
        + f"## Model\nServing: `{summary.get('model_version') or 'popularity only'}`\n\n"
        + f"Promotion: {promotion.get('reason', 'no new model tonight')}\n\n"
        + f"### Training\n{training_markdown((summary.get('metrics') or {}).get('candidate'))}\n"
        + f"### Metrics (tonight's held-out window)\n{_metrics_md(summary.get('metrics') or {})}\n"
        + f"### Training curve\n{_curve_md(summary.get('trained'))}\n"
        + "## Recommendations\n"
        + f"{recs['rows']} rows for {recs['users']} users; coverage {recs['coverage']:.1%} "
        + f"({recs['items_recommended']} of {recs['catalogue_items']} items)\n\n{_table(sources)}\n"
        + f"## Published\n{_table([{'target': k, 'where': v} for k, v in summary['published']['targets'].items()])}"
        + (f"\n## Quality\n{summary['degraded']}\n" if summary.get("degraded") else "")
    )


def _metrics_md(metrics: dict[str, Any]) -> str:
    warning = margin_warning(metrics)
    return _table(metric_table(metrics)) + (f"\n**Warning**: {warning}\n" if warning else "")


def publish_artifacts(summary: dict[str, Any]) -> list[str]:
    """The report, the metrics table and the link to the published table, keyed per flow;
    returns the artifact keys."""
    flow_name, run_date = summary["flow"], summary["run_date"]
    create_markdown_artifact(key=f"{flow_name}-report", markdown=build_report(summary), description=f"{run_date}")
    metrics = summary.get("metrics") or {}
    warning = margin_warning(metrics)
    create_table_artifact(
        key=f"{flow_name}-metrics",
        table=metric_table(metrics),
        description=f"metrics {run_date}: model x metric on tonight's held-out window; published coverage "
        f"{summary['recommendations']['coverage']:.1%}" + (f". Warning: {warning}" if warning else ""),
    )
    targets = summary["published"]["targets"]
    where = targets.get("duckdb") or targets.get("parquet")
    create_markdown_artifact(
        key=f"{flow_name}-behavior",
        markdown=behavior_markdown(summary["behavior"]),
        description=f"behaviour {run_date}",
    )
    keys = [f"{flow_name}-report", f"{flow_name}-metrics", f"{flow_name}-behavior"]
    if where:
        keys.append(f"{flow_name}-published")
        create_markdown_artifact(
            key=f"{flow_name}-published",
            markdown=published_markdown(targets, run_date),
            description=f"the published table {run_date}: queries to paste",
        )
    return keys


def prune_artifacts(flow_name: str, keep: int, batch: int = 100) -> int:
    """Delete the artifacts of every run of ``flow_name`` but the latest ``keep`` (by expected
    start, the current run included); returns how many were deleted.

    Older runs are read newest first, a batch at a time, and the scan stops at the first batch
    without artifacts: earlier prunes already emptied the runs before it.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    deleted = 0
    flow_filter = FlowFilter(name=FlowFilterName(any_=[flow_name]))
    with get_client(sync_client=True) as client:
        offset = keep
        while True:
            runs = client.read_flow_runs(
                flow_filter=flow_filter, sort=FlowRunSort.EXPECTED_START_TIME_DESC, offset=offset, limit=batch
            )
            if not runs:
                return deleted
            ids = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in runs]))
            artifacts = client.read_artifacts(artifact_filter=ids)
            if not artifacts:
                return deleted
            while artifacts:
                for artifact in artifacts:
                    client.delete_artifact(artifact.id)
                deleted += len(artifacts)
                artifacts = client.read_artifacts(artifact_filter=ids)
            offset += batch


def read_stats(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
