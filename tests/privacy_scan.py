"""Finding ids in what a night leaves behind: every file under a data directory (Parquet and
DuckDB decoded, everything else as bytes), and the Prefect logs and artifacts of a flow run."""

import re
import time
from pathlib import Path

import duckdb
import polars as pl

# Compressed images cannot be searched as text; their text comes from frames scanned elsewhere.
_OPAQUE = {".png", ".gif", ".ico", ".otf", ".jpg"}


def id_pattern(ids) -> re.Pattern:
    """Any of ``ids`` as a whole token (``u000001`` is not found inside ``u0000011``)."""
    alternatives = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])")


def _frame_text(frame: pl.DataFrame) -> str:
    parts = []
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if dtype == pl.List(pl.String):
            column = column.explode()
        if column.dtype in (pl.String, pl.Categorical):
            parts.append("\n".join(v for v in column.cast(pl.String).unique().to_list() if v is not None))
    return "\n".join(parts)


def _duckdb_text(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return "\n".join(_frame_text(con.sql(f'SELECT * FROM "{t}"').pl()) for t in tables)


def file_text(path: Path) -> str:
    if path.suffix == ".parquet":
        return _frame_text(pl.read_parquet(path))
    if path.suffix == ".duckdb":
        return _duckdb_text(path)
    return path.read_bytes().decode("latin-1")


def scan_files(root: Path, pattern: re.Pattern) -> dict[str, set[str]]:
    """Relative path -> the ids found in it, for every file under ``root`` holding any."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix not in _OPAQUE and path.name != ".nightrec.lock":
            hits = set(pattern.findall(file_text(path)))
            if hits:
                found[path.relative_to(root).as_posix()] = hits
    return found


def flow_run_text(flow_run_id, last_line: str) -> dict[str, str]:
    """Every log line, artifact and the stored parameters and result of a flow run, as text.

    Logs reach the API from a background worker: the logs are read until ``last_line`` (a
    message the run logs last) is among them, so none is missed."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        for _ in range(60):
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any(last_line in log.message for log in logs):
                break
            time.sleep(0.5)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = client.read_flow_run(flow_run_id)
    return {
        "logs": "\n".join(log.message for log in logs),
        "artifacts": "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts),
        "parameters": str(run.parameters),
        "state": str(run.state.message),
    }
