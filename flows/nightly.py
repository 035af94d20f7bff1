"""The nightly flow: validate -> histories -> popularity fallback -> publish -> report."""

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.tasks import ingest_events, publish, recommend_popularity, resolve_run_date, validate_events
from nightrec.config import NightrecConfig


def _run_name() -> str:
    config = flow_run.parameters.get("config") or {}
    run_date = config.get("run_date") if isinstance(config, dict) else config.run_date
    return f"nightly-{run_date or 'latest'}"


def _report(run_date, validation: dict, published: dict) -> str:
    reasons = "\n".join(f"| {name} | {n} |" for name, n in validation["by_reason"].items())
    targets = "\n".join(f"- {name}: `{where}`" for name, where in published["targets"].items())
    return (
        f"# nightrec nightly run {run_date}\n\n"
        f"## Data quality\nrows in {validation['rows_in']}, clean {validation['rows_clean']}, "
        f"quarantined {validation['rows_quarantined']}\n\n| rule | rows |\n|---|---|\n{reasons}\n\n"
        f"## Published\n{published['rows']} rows for {published['users']} users\n\n{targets}\n"
    )


@flow(name="nightly", flow_run_name=_run_name, log_prints=True)
def nightly(config: NightrecConfig) -> dict:
    """One night: read the events up to the run date, validate, recommend, publish."""
    run_date = resolve_run_date(config)
    events_path = ingest_events(config, run_date)
    clean_path, validation = validate_events(events_path, config, run_date)
    recs_path = recommend_popularity(clean_path, config, run_date)
    published = publish(recs_path, config, run_date)
    create_markdown_artifact(
        key="nightly-report", markdown=_report(run_date, validation, published), description=f"nightly {run_date}"
    )
    return {"run_date": run_date.isoformat(), "validation": validation, "published": published}
