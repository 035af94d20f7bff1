"""The persistent GX project of a data directory (``<data_dir>/gx/``) and the night's Checkpoint.

A GX user finds what they expect there: ``great_expectations.yml``, the suites in
``expectations/*.json`` (created from ``expectations/suites.py`` on first use, then read back, so
an edit takes effect), one Checkpoint ``nightrec`` whose run name is the run date, the validation
results of every night in ``uncommitted/validations/`` and one Data Docs site with all of them.
Each night's five frames are written as Parquet under ``uncommitted/batches/<date>/`` (the last
night's only), the daily batches the Checkpoint validates.
"""

import shutil
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import great_expectations as gx
import polars as pl
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

from expectations.docs import DOCS_SITE, configure_site, make_offline
from expectations.suites import BATCHES, NATIVE, NIGHT_SEVERITY, default_suites, suite_name
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.layout import GX_DIR

CHECKPOINT = "nightrec"
DATASOURCE = "nightrec"
BATCH_DEFINITION = "nightly"
BATCHES_DIR = "uncommitted/batches"
SAMPLE = 5

_lock = threading.Lock()


def gx_root(data_dir: Path) -> Path:
    """The GX project folder of ``data_dir`` (what ``gx.get_context(project_root_dir=data_dir)`` opens)."""
    return Path(data_dir).resolve() / GX_DIR


def _context(data_dir: Path):
    """The project, opened afresh each night: GX lists an asset's files once per context, and a user
    may have edited the project since the last night."""
    root = Path(data_dir).resolve()
    # GX fingerprints every pandas batch under 1 GB with an md5 of the whole frame, a third of
    # the validation time; the fingerprint is only metadata, so it is skipped at every size.
    pandas_execution_engine.HASH_THRESHOLD = 0
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=root)
    if context.variables.progress_bars is None:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _datasource(context):
    """The Parquet datasource over ``uncommitted/batches`` (moved along when the data directory was)."""
    folder = gx_root_of(context) / BATCHES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    try:
        source = context.data_sources.get(DATASOURCE)
    except (KeyError, ValueError):
        source = None
    if source is not None and Path(source.base_directory).resolve() != folder.resolve():
        context.data_sources.delete(DATASOURCE)
        source = None
    return source or context.data_sources.add_pandas_filesystem(DATASOURCE, base_directory=folder)


def _batch_definition(context, batch: str):
    source = _datasource(context)
    try:
        asset = source.get_asset(batch)
    except LookupError:
        asset = source.add_parquet_asset(batch)
    existing = [d for d in asset.batch_definitions if d.name == BATCH_DEFINITION]
    if existing:
        return existing[0]
    regex = rf"(?P<year>\d{{4}})-(?P<month>\d{{2}})-(?P<day>\d{{2}})/{batch}\.parquet"
    return asset.add_batch_definition_daily(BATCH_DEFINITION, regex=regex)


def gx_root_of(context) -> Path:
    return Path(context.root_directory)


def _suite(context, batch: str, shipped, severity: dict[str, str]):
    """The saved suite (written from ``shipped`` if absent), with the config's severities applied."""
    name = suite_name(batch)
    try:
        suite = context.suites.get(name)
    except Exception as exc:  # a missing suite is created; an unreadable one is the user's edit to fix
        path = gx_root_of(context) / "expectations" / f"{name}.json"
        if path.exists():
            raise ConfigError(f"{path}: the saved expectation suite cannot be read: {exc}") from None
        return context.suites.add(shipped)
    changed = False
    for expectation in suite.expectations:
        wanted = severity.get((expectation.meta or {}).get("name"))
        if wanted is not None and expectation.severity != NATIVE[wanted]:
            expectation.severity = NATIVE[wanted]
            changed = True
    if changed:
        suite.save()
    return suite


def checkpoint(context, config: NightrecConfig):
    """The project's ``nightrec`` Checkpoint, with its suites, assets and validation definitions."""
    configure_site(context)
    shipped = default_suites(config)
    severity = {name: sev for name, sev in config.validation.severity.items() if name in NIGHT_SEVERITY}
    definitions = []
    for batch in BATCHES:
        suite = _suite(context, batch, shipped[batch], severity)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite.name, data=_batch_definition(context, batch), suite=suite)
        )
        definitions.append(definition)
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])],
            result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLE},
        )
    )


def write_batches(data_dir: Path, run_date: date, batches: dict[str, pl.DataFrame]) -> Path:
    """Tonight's frames as the Checkpoint's daily batches; earlier nights' batches are removed."""
    root = gx_root(data_dir) / BATCHES_DIR
    night = root / run_date.isoformat()
    if root.exists():
        for old in root.iterdir():
            if old != night:
                shutil.rmtree(old, ignore_errors=True)
    night.mkdir(parents=True, exist_ok=True)
    for batch, frame in batches.items():
        frame.write_parquet(night / f"{batch}.parquet")
    return night


def run_checkpoint(config: NightrecConfig, run_date: date, batches: dict[str, pl.DataFrame], params: dict):
    """Run the night's Checkpoint (run name: the run date) and make its Data Docs readable offline.

    Returns the ``CheckpointResult``.
    """
    with _lock:
        write_batches(config.data_dir, run_date, batches)  # GX tests an asset's files when adding it
        context = _context(config.data_dir)
        cp = checkpoint(context, config)
        run_id = RunIdentifier(run_name=run_date.isoformat(), run_time=datetime.now(UTC))
        day = {"year": run_date.year, "month": run_date.month, "day": run_date.day}
        try:
            result = cp.run(batch_parameters=day, expectation_parameters=params, run_id=run_id)
        except Exception as exc:  # an edited suite GX cannot run (a bad kwarg, an unknown $PARAMETER)
            where = gx_root(config.data_dir) / "expectations"
            raise ConfigError(
                f"GX could not run the saved suites in {where}: {type(exc).__name__}: {exc} "
                f"(parameters nightrec provides: {', '.join(sorted(params))})"
            ) from None
        make_offline(context)
    return result
