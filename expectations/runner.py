"""Running the checks for one night: clean and quarantine files, the report and the verdict."""

import time
from datetime import date
from pathlib import Path

import polars as pl

from expectations.docs import site_index
from expectations.frames import columns_frame, events_frame
from expectations.load import LoadedEvents, from_frame, load_events
from expectations.night import night_stats
from expectations.project import gx_root, run_checkpoint
from expectations.records import records_of
from expectations.rules import row_rules, rule_flags, split_quarantine
from expectations.suites import COLUMNS, ERROR, EVENTS, ITEMS, NIGHT, USERS, WARN, check_config, suite_parameters
from nightrec.config import NightrecConfig
from nightrec.errors import InputError, NightrecError
from nightrec.ingest.runs import write_json
from nightrec.layout import CLEAN_FILE, QUARANTINE_FILE, VALIDATION_FILE
from nightrec.schema import EVENT_SCHEMA, REQUIRED_COLUMNS
from nightrec.shards import ROW, merge_parts

OK = "ok"


class ValidationFailed(NightrecError):
    """An ``error``-severity expectation failed: nothing may train on or publish from this night."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _status(records: list[dict]) -> str:
    outcomes = {r["outcome"] for r in records}
    return ERROR if ERROR in outcomes else WARN if WARN in outcomes else OK


def failure_detail(record: dict) -> str:
    """One line naming a failed expectation and what it saw."""
    if record.get("exception"):
        seen = f"GX raised {record['exception']}"
    elif record["unexpected_count"] is not None and record["element_count"] and record["batch"] != NIGHT:
        seen = f"{record['unexpected_count']} of {record['element_count']} ({record['unexpected_percent']:.1f}%)"
    else:
        seen = f"observed {record['observed_value']}"
    return f"{record['name']} [{record['group']}]: {seen}; expected {record['threshold']}"


def validate_events(
    loaded: LoadedEvents,
    config: NightrecConfig,
    run_date: date,
    out_dir: Path | None = None,
    source: str = "",
    flags: pl.DataFrame | None = None,
) -> dict:
    """Check ``loaded`` for ``run_date`` with the GX project's Checkpoint (``<data_dir>/gx``, whose Data
    Docs gain this run); write clean/quarantine/``validation.json`` under ``out_dir`` if given.

    ``flags``: the row rules' masks in the events' order, when the shards computed them
    (``shard_flags``); the verdict over all rows is still this one GX run.
    Returns the report (the content of ``validation.json``); never raises on a failed expectation.
    """
    started = time.perf_counter()
    check_config(config)
    # with the shards' flags, the rules are needed only for their names and descriptions
    rules = row_rules(config, run_date, loaded.events if flags is None else loaded.events.head(0))
    split = split_quarantine(loaded.events, rules, flags)
    timings = {"quarantine": time.perf_counter() - started}
    stats = night_stats(loaded.events, split.clean, config, run_date)
    timings["night"] = time.perf_counter() - started - sum(timings.values())
    flag_names = {name: split.flags.columns[i] for i, name in enumerate(rules)}
    batches = {
        EVENTS: events_frame(loaded.events, split.flags, flag_names),
        COLUMNS: columns_frame(loaded.source_columns),
        NIGHT: stats.night,
        USERS: stats.users,
        ITEMS: stats.items,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        split.clean.write_parquet(out_dir / CLEAN_FILE)
        split.quarantine.write_parquet(out_dir / QUARANTINE_FILE)
    timings["write"] = time.perf_counter() - started - sum(timings.values())
    result = run_checkpoint(config, run_date, batches, suite_parameters(config, run_date))
    records = records_of(result, config, run_date, {name: rule.description for name, rule in rules.items()})
    timings["gx"] = time.perf_counter() - started - sum(timings.values())
    for record in records:
        if (
            record["batch"] == NIGHT and record["column"] in stats.night.columns
        ):  # a one-row frame: the value itself is what was observed
            record["observed_value"] = stats.night.get_column(record["column"])[0]
        if record["name"] == "required_columns":
            absent = [c for c in REQUIRED_COLUMNS if c not in loaded.source_columns]
            record["observed_value"] = f"missing {', '.join(absent)}" if absent else "all present"
        if record["name"] not in split.counts:
            continue
        # GX and the Polars masks must agree on every row rule, or the quarantine is not what GX judged.
        if record["unexpected_count"] != split.counts[record["name"]]:
            raise NightrecError(
                f"{source}: rule {record['name']}: GX counted {record['unexpected_count']} rows, "
                f"the quarantine mask {split.counts[record['name']]} (was the rule's column or values changed "
                f"in {gx_root(config.data_dir)}/expectations? its limits come from the config's validation section)"
            )
        record["sample"] = split.samples.get(record["name"], [])
        if record["outcome"] == "pass" and split.counts[record["name"]]:
            record["outcome"] = WARN  # within the rule's tolerance: the rows are quarantined, the night goes on
    summary = split.summary
    status = _status(records)
    report = {
        "run_date": run_date.isoformat(),
        "source": source,
        "status": status,
        **summary,
        "reconciled": summary["rows_in"] == summary["rows_clean"] + summary["rows_quarantined"] == loaded.events.height,
        "night_rows": stats.info["night_rows"],
        "night": stats.info,
        "source_columns": loaded.source_columns,
        "failed": {outcome: [r["name"] for r in records if r["outcome"] == outcome] for outcome in (ERROR, WARN)},
        "checkpoint": {"name": result.name, "run_name": result.run_id.run_name, "success": result.success},
        "expectations": records,
        "files": {
            "clean": str(out_dir / CLEAN_FILE) if out_dir else None,
            "quarantine": str(out_dir / QUARANTINE_FILE) if out_dir else None,
            "data_docs": str(site_index(gx_root(config.data_dir))),
        },
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {stage: round(seconds, 3) for stage, seconds in timings.items()},
    }
    if out_dir is not None:
        write_json(out_dir / VALIDATION_FILE, report)
    return report


def raise_on_error(report: dict) -> None:
    """Raise ``ValidationFailed`` naming every failed ``error`` expectation, if there is one."""
    failed = [r for r in report["expectations"] if r["outcome"] == ERROR]
    if failed:
        where = report["files"]["data_docs"] or "no report written"
        raise ValidationFailed(
            f"{report['source']}: validation failed for run {report['run_date']}: "
            + "; ".join(failure_detail(r) for r in failed)
            + f" (Data Docs: {where})",
            report,
        )


def shard_flags(part: Path, config: NightrecConfig, run_date: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The row rules' masks for one user shard (``nightrec.shards.split_by_user``), with each row's
    position in the night's events, and the shard's clean rows. Every rule is per row or per user
    (an exact copy has the copied row's user), so a shard's masks are its rows' masks in the
    whole night and its clean rows are the night's clean rows of its users, in their order."""
    rows = pl.read_parquet(part, columns=[ROW])
    events = load_events(part).events
    flags = rule_flags(events, row_rules(config, run_date, events))
    clean = events.filter(~flags.select(pl.any_horizontal(pl.all())).to_series()) if flags.width else events
    return pl.concat([rows, flags], how="horizontal"), clean.select(*EVENT_SCHEMA)


def validate_sharded(events_path: Path, flag_parts: list[Path], config: NightrecConfig, run_date: date) -> dict:
    """``validate_file`` with the row rules' masks from the shards: the quarantine split, the files
    and the GX verdict over every row are the single-process ones."""
    events_path = Path(events_path)
    flags = merge_parts(flag_parts).drop(ROW)
    loaded = load_events(events_path)
    report = validate_events(loaded, config, run_date, events_path.parent, str(events_path), flags)
    return _checked(report, events_path, run_date)


def _checked(report: dict, events_path: Path, run_date: date) -> dict:
    raise_on_error(report)
    if report["rows_clean"] == 0:
        raise InputError(f"{events_path}: no clean events for {run_date} ({report['rows_quarantined']} quarantined)")
    return report


def validate_file(events_path: Path, config: NightrecConfig, run_date: date) -> dict:
    """Validate ``events_path`` and write ``clean.parquet``, ``quarantine.parquet`` and ``validation.json``
    beside it (the Data Docs are the GX project's, under ``<data_dir>/gx``).

    Returns the report, whose ``rows_in``, ``rows_clean``, ``rows_quarantined`` and ``by_reason``
    summarise the split. Raises ``ValidationFailed`` (a ``NightrecError``) naming the failed
    expectations when any ``error`` expectation fails, after writing every file.
    """
    events_path = Path(events_path)
    report = validate_events(load_events(events_path), config, run_date, events_path.parent, str(events_path))
    return _checked(report, events_path, run_date)


def validate_frame(events: pl.DataFrame, config: NightrecConfig, run_date: date, out_dir: Path | None = None) -> dict:
    """Validate an in-memory frame (tests, notebooks); same report as ``validate_file``, never raises on a verdict."""
    return validate_events(from_frame(events), config, run_date, out_dir, source="<frame>")
