"""Publishing to PostgreSQL: ``COPY`` into a staging table, then one transaction swaps the run in.

The staging table is a session-local TEMP table, so a writer killed before the swap leaves
nothing behind, and the live table is only touched inside the swap transaction: readers (in
any isolation level) see the old rows or the new ones, never a mix. The URL is a secret: no
message, log line or return value ever contains it; errors name host and port only.
"""

import io
from datetime import date

import polars as pl
from pydantic import SecretStr

from nightrec.config import SQL_IDENTIFIER
from nightrec.errors import ConfigError, NightrecError
from nightrec.schema import FALLBACK_SCHEMA, RECOMMENDATION_SCHEMA, REFRESHED_AT, TIMESTAMP_DTYPE, conform

_PG_TYPES = {pl.Date: "date", pl.String: "text", pl.Int32: "integer", pl.Float64: "double precision"}
_PG_TYPES[TIMESTAMP_DTYPE] = "timestamptz"
_MAX_TABLE = 40  # leaves room for the _latest / _fallback / index suffixes within 63 bytes
CONNECT_TIMEOUT_S = 5


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # the optional extra
        raise ConfigError("publishing to PostgreSQL needs psycopg: pip install 'nightrec[postgres]'") from exc
    return psycopg


def check_identifier(name: str, what: str) -> str:
    """Reject anything but a plain SQL identifier (names are spliced into DDL)."""
    if not isinstance(name, str) or not SQL_IDENTIFIER.fullmatch(name):
        raise ConfigError(f"publish.{what}: {name!r} is not a plain SQL identifier (letters, digits, _)")
    if what == "postgres_table" and len(name) > _MAX_TABLE:
        raise ConfigError(f"publish.{what}: {name!r} is longer than {_MAX_TABLE} characters")
    return name


def _secret(url: SecretStr | str) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def describe(url: SecretStr | str) -> str:
    """``host:port/dbname`` of a URL, never its user or password."""
    psycopg = _psycopg()
    try:
        info = psycopg.conninfo.conninfo_to_dict(_secret(url))
    except psycopg.ProgrammingError:
        return "<unparseable PostgreSQL URL>"
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _scrub(message: str, url: SecretStr | str) -> str:
    psycopg = _psycopg()
    secret = _secret(url)
    try:
        password = psycopg.conninfo.conninfo_to_dict(secret).get("password")
    except psycopg.ProgrammingError:
        password = None
    for needle in filter(None, (secret, password)):
        message = message.replace(needle, "***")
    return message.strip().splitlines()[0] if message.strip() else "no detail"


def connect(url: SecretStr | str):
    """Open a connection, or raise ``NightrecError`` naming host and port (no credentials)."""
    psycopg = _psycopg()
    where = describe(url)
    try:
        return psycopg.connect(_secret(url), connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise NightrecError(f"PostgreSQL at {where} does not answer: {_scrub(str(exc), url)}") from None


def _names(schema: str, table: str) -> dict:
    from psycopg import sql

    check_identifier(schema, "postgres_schema")
    check_identifier(table, "postgres_table")
    return {
        "schema": sql.Identifier(schema),
        "table": sql.Identifier(schema, table),
        "latest": sql.Identifier(schema, f"{table}_latest"),
        "fallback": sql.Identifier(schema, f"{table}_fallback"),
        "log": sql.Identifier(schema, f"{table}_publish_log"),
        "user_rank": sql.Identifier(f"{table}_user_id_rank_idx"),
        "by_date": sql.Identifier(f"{table}_run_date_idx"),
        "fallback_date": sql.Identifier(f"{table}_fallback_run_date_idx"),
    }


def _columns(schema: dict) -> str:
    return ", ".join(f"{name} {_PG_TYPES[dtype]}" for name, dtype in schema.items())


def _has_column(con, relation, column: str) -> bool:
    """Whether ``relation`` (a table or view, maybe absent) has ``column``, from the catalog alone."""
    query = "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped"
    return con.execute(query, [relation.as_string(con), column]).fetchone()[0] > 0


def _ensure_tables(con, names: dict, fallback_schema: dict) -> None:
    """Create what is missing and upgrade a table of an earlier version (no ``refreshed_at``).

    Only a missing table, column or view is altered: ALTER and CREATE OR REPLACE VIEW take locks
    that readers would queue behind, so a current schema costs readers nothing.
    """
    from psycopg import sql

    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema}"),
        sql.SQL("CREATE TABLE IF NOT EXISTS {table} (" + _columns(RECOMMENDATION_SCHEMA) + ")"),
        sql.SQL("CREATE INDEX IF NOT EXISTS {user_rank} ON {table} (user_id, rank)"),
        sql.SQL("CREATE INDEX IF NOT EXISTS {by_date} ON {table} (run_date)"),
        sql.SQL("CREATE TABLE IF NOT EXISTS {fallback} (" + _columns(fallback_schema) + ")"),
        sql.SQL("CREATE INDEX IF NOT EXISTS {fallback_date} ON {fallback} (run_date)"),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {log} (txn text PRIMARY KEY, run_date date, published_at timestamptz DEFAULT now())"
        ),
    ]
    with con.transaction():
        # Serialise concurrent first publishes; readers are never blocked by this lock.
        con.execute("SELECT pg_advisory_xact_lock(hashtext('nightrec-publish-ddl'))")
        for statement in statements:
            con.execute(statement.format(**names))
        if not _has_column(con, names["table"], REFRESHED_AT):
            add = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS " + _columns({REFRESHED_AT: TIMESTAMP_DTYPE})
            con.execute(sql.SQL(add).format(**names))
        # A view's * is expanded when it is created: one older than the column is replaced.
        if not _has_column(con, names["latest"], REFRESHED_AT):
            latest = (
                "CREATE OR REPLACE VIEW {latest} AS SELECT * FROM {table} "
                "WHERE run_date = (SELECT max(run_date) FROM {table})"
            )
            con.execute(sql.SQL(latest).format(**names))


def _copy_into(con, target: str, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    with con.cursor() as cur, cur.copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
        view = buffer.getbuffer()
        for start in range(0, len(view), 1 << 20):
            copy.write(view[start : start + (1 << 20)])


def _stage(con, names: dict, recs: pl.DataFrame, fallback: pl.DataFrame | None) -> None:
    """COPY tonight's rows into session-local staging tables (gone if the writer dies)."""
    from psycopg import sql

    with con.transaction():
        con.execute(sql.SQL("CREATE TEMP TABLE stage_recs (LIKE {table}) ON COMMIT PRESERVE ROWS").format(**names))
        con.execute(sql.SQL("CREATE TEMP TABLE stage_fallback (LIKE {fallback})").format(**names))
        _copy_into(con, "stage_recs", recs)
        if fallback is not None:
            _copy_into(con, "stage_fallback", fallback)


def _swap(con, names: dict, run_date: date, keep: int, with_fallback: bool, txn: str | None = None) -> None:
    """One transaction: replace the run date's rows with the staged ones, apply retention and
    record ``txn`` (the publish journal's id) in ``<table>_publish_log``."""
    from psycopg import sql

    cutoff = sql.SQL(
        "DELETE FROM {t} WHERE run_date < (SELECT coalesce(min(d), '-infinity'::date) FROM "
        "(SELECT DISTINCT run_date AS d FROM {t} ORDER BY d DESC LIMIT %s) AS kept)"
    )
    with con.transaction():
        con.execute(sql.SQL("DELETE FROM {table} WHERE run_date = %s").format(**names), [run_date])
        con.execute(sql.SQL("INSERT INTO {table} SELECT * FROM stage_recs").format(**names))
        if with_fallback:
            con.execute(sql.SQL("DELETE FROM {fallback} WHERE run_date = %s").format(**names), [run_date])
            con.execute(sql.SQL("INSERT INTO {fallback} SELECT * FROM stage_fallback").format(**names))
        con.execute(cutoff.format(t=names["table"]), [keep])
        con.execute(cutoff.format(t=names["fallback"]), [keep])
        _record(con, names, run_date, txn)


def _record(con, names: dict, run_date: date, txn: str | None) -> None:
    """Log ``txn`` inside the swap's transaction: it is there exactly when the swap committed."""
    from psycopg import sql

    if txn is not None:
        con.execute(sql.SQL("INSERT INTO {log} (txn, run_date) VALUES (%s, %s)").format(**names), [txn, run_date])
        con.execute(sql.SQL("DELETE FROM {log} WHERE published_at < now() - interval '30 days'").format(**names))


def publish_postgres(
    recs: pl.DataFrame,
    url: SecretStr | str,
    run_date: date,
    schema: str = "public",
    table: str = "recommendations",
    keep: int = 30,
    fallback: pl.DataFrame | None = None,
    txn: str | None = None,
) -> str:
    """Publish one run date into ``schema.table`` (view ``<table>_latest``, new-user list in
    ``<table>_fallback``), keeping the last ``keep`` dates. Returns ``host:port/db schema.table``.

    ``txn``, the publish journal's id, is recorded with the swap (``committed``).
    """
    names = _names(schema, table)
    recs = conform(recs)
    if recs.is_empty() and (fallback is None or fallback.is_empty()):
        raise NightrecError("refusing to publish an empty table to PostgreSQL: it keeps the last run")
    if fallback is not None:
        fallback = fallback.select(pl.col(c).cast(t) for c, t in FALLBACK_SCHEMA.items())
    psycopg = _psycopg()
    where = describe(url)
    try:
        with connect(url) as con:
            _ensure_tables(con, names, FALLBACK_SCHEMA)
            _stage(con, names, recs, fallback)
            _swap(con, names, run_date, keep, fallback is not None, txn)
            con.execute(psycopg.sql.SQL("ANALYZE {table}").format(**names))
    except psycopg.Error as exc:
        raise NightrecError(
            f"PostgreSQL at {where}: publishing {schema}.{table} failed: {_scrub(str(exc), url)}"
        ) from None
    return f"{where} {schema}.{table}"


def refresh_postgres(
    recs: pl.DataFrame,
    url: SecretStr | str,
    run_date: date,
    schema: str = "public",
    table: str = "recommendations",
    txn: str | None = None,
) -> str:
    """Replace the ``run_date`` lists of ``recs``' users (an intra-day refresh) in one
    transaction; every other row stays as it is. Returns ``host:port/db schema.table``.

    Refuses a date PostgreSQL holds no nightly for: a refresh extends a published night.
    ``txn`` is recorded as the nightly's swap records it (``committed``).
    """
    from psycopg import sql

    names = _names(schema, table)
    recs = conform(recs)
    psycopg = _psycopg()
    where = describe(url)
    night = sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} WHERE run_date = %s)").format(**names)
    replaced = sql.SQL("DELETE FROM {table} WHERE run_date = %s AND user_id IN (SELECT user_id FROM stage_recs)")
    try:
        with connect(url) as con:
            _ensure_tables(con, names, FALLBACK_SCHEMA)
            _stage(con, names, recs, None)
            with con.transaction():
                if not con.execute(night, [run_date]).fetchone()[0]:
                    raise NightrecError(f"PostgreSQL at {where}: {schema}.{table} holds no nightly for {run_date}")
                con.execute(replaced.format(**names), [run_date])
                con.execute(sql.SQL("INSERT INTO {table} SELECT * FROM stage_recs").format(**names))
                _record(con, names, run_date, txn)
    except psycopg.Error as exc:
        raise NightrecError(
            f"PostgreSQL at {where}: refreshing {schema}.{table} failed: {_scrub(str(exc), url)}"
        ) from None
    return f"{where} {schema}.{table}"


def committed(url: SecretStr | str, txn: str, schema: str = "public", table: str = "recommendations") -> bool:
    """Whether the publish with journal id ``txn`` committed its swap into ``schema.table``."""
    from psycopg import sql

    names = _names(schema, table)
    psycopg = _psycopg()
    try:
        with connect(url) as con:
            return (
                con.execute(sql.SQL("SELECT 1 FROM {log} WHERE txn = %s").format(**names), [txn]).fetchone() is not None
            )
    except psycopg.errors.UndefinedTable:
        return False
    except psycopg.Error as exc:
        raise NightrecError(f"PostgreSQL at {describe(url)}: {_scrub(str(exc), url)}") from None


def read_user_recommendations_pg(
    url: SecretStr | str,
    user_id: str,
    run_date: date | None = None,
    schema: str = "public",
    table: str = "recommendations",
) -> pl.DataFrame:
    """One user's list (latest run unless ``run_date``), in the published schema."""
    from psycopg import sql

    names = _names(schema, table)
    if run_date is None:
        query = sql.SQL("SELECT * FROM {latest} WHERE user_id = %s ORDER BY rank").format(**names)
        params: list = [user_id]
    else:
        query = sql.SQL("SELECT * FROM {table} WHERE user_id = %s AND run_date = %s ORDER BY rank").format(**names)
        params = [user_id, run_date]
    return _query(url, query, params, RECOMMENDATION_SCHEMA)


def read_fallback_pg(
    url: SecretStr | str, run_date: date | None = None, schema: str = "public", table: str = "recommendations"
) -> pl.DataFrame:
    """The new-user list of the latest run (or ``run_date``)."""
    from psycopg import sql

    names = _names(schema, table)
    when = sql.SQL("%s") if run_date else sql.SQL("(SELECT max(run_date) FROM {fallback})").format(**names)
    query = sql.SQL("SELECT * FROM {fallback} WHERE run_date = {when} ORDER BY rank").format(when=when, **names)
    return _query(url, query, [run_date] if run_date else [], FALLBACK_SCHEMA)


def _query(url: SecretStr | str, query, params: list, schema: dict) -> pl.DataFrame:
    psycopg = _psycopg()
    try:
        with connect(url) as con:
            rows = con.execute(query, params).fetchall()
    except psycopg.errors.UndefinedTable:
        raise NightrecError(f"PostgreSQL at {describe(url)}: no published recommendations yet") from None
    except psycopg.Error as exc:
        raise NightrecError(f"PostgreSQL at {describe(url)}: {_scrub(str(exc), url)}") from None
    return pl.DataFrame(rows, schema=schema, orient="row")


def forget_users_pg(
    url: SecretStr | str, matches, schema: str = "public", table: str = "recommendations"
) -> tuple[int, set[str]]:
    """Delete every row whose ``user_id`` ``matches`` (a function from the table's distinct ids to
    the ones to delete) in one transaction; returns the rows deleted and the ids matched."""
    from psycopg import sql

    psycopg = _psycopg()
    names = _names(schema, table)
    try:
        with connect(url) as con, con.transaction():
            try:
                ids = [r[0] for r in con.execute(sql.SQL("SELECT DISTINCT user_id FROM {table}").format(**names))]
            except psycopg.errors.UndefinedTable:
                return 0, set()
            doomed = set(matches(pl.Series("user_id", ids, dtype=pl.String)))
            if not doomed:
                return 0, doomed
            query = sql.SQL("DELETE FROM {table} WHERE user_id = ANY(%s)").format(**names)
            return con.execute(query, [sorted(doomed)]).rowcount, doomed
    except psycopg.Error as exc:
        raise NightrecError(f"PostgreSQL at {describe(url)}: {_scrub(str(exc), url)}") from None
