"""The forget flow: one user out of every stored night, the sequences and every published table.

It takes the user's pseudonym, never the raw id, so the Prefect database that stores flow
parameters never holds the id (``nightrec forget`` computes the pseudonym from the id it is given).
"""

from prefect import flow
from prefect.logging import get_run_logger

from flows.nightly import with_run_date
from nightrec.config import NightrecConfig
from nightrec.lock import run_lock
from nightrec.privacy.forget import forget_user


def forget_summary(report: dict) -> str:
    """What was deleted, by count only (no id, no row)."""
    parts = [
        f"deleted {sum(report['rows'].values())} rows from {len(report['rows'])} files",
        f"redacted {len(report['redacted'])} reports",
        f"{report['postgres_rows']} PostgreSQL rows",
    ]
    if report.get("duckdb"):
        parts.append("rebuilt the DuckDB table")
    return ", ".join(parts) + "; the next night retrains from scratch and excludes the user"


def forget_now(config: NightrecConfig, user_pseudonym: str) -> dict:
    """Forget under the data directory's lock (a night in progress would write the user back)."""
    with run_lock(config.data_dir, "forget"):
        return forget_user(config, user_pseudonym)


@flow(name="forget", log_prints=False, timeout_seconds=3600)
def forget(pseudonym: str, config: NightrecConfig | None = None) -> dict:
    """Forget the user with this pseudonym (``privacy.key`` must be the key that made it)."""
    report = forget_now(with_run_date(config, None), pseudonym)
    get_run_logger().info(forget_summary(report))
    return report
