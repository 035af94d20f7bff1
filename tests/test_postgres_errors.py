"""PostgreSQL faults that need no server: an address that does not answer and hostile names."""

from datetime import date

import pytest
from pydantic import SecretStr

from nightrec.config import load_config
from nightrec.errors import ConfigError, NightrecError
from tests.publish_fixtures import table

D1 = date(2026, 3, 10)
URL = "postgresql://writer:S3cret-pw@127.0.0.1:9/nightrec"


def test_unreachable_server_names_host_and_port_but_never_the_password():
    import socket

    from nightrec.publish.postgres import publish_postgres

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://writer:S3cret-pw@127.0.0.1:{port}/nightrec"
    with pytest.raises(NightrecError) as info:
        publish_postgres(table(D1, 3), SecretStr(url), D1)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "S3cret-pw" not in message and "writer" not in message


def test_table_or_schema_names_with_sql_metacharacters_are_rejected():
    from nightrec.publish.postgres import publish_postgres

    for bad in ("recs; DROP TABLE x", 'a"b', "recs--", "1recs", "rec s"):
        with pytest.raises(ConfigError):
            load_config(None, {"publish": {"postgres_table": bad}}, environ={})
        with pytest.raises(ConfigError):
            load_config(None, {"publish": {"postgres_schema": bad}}, environ={})
        with pytest.raises(ConfigError):
            publish_postgres(table(D1, 2), URL, D1, schema=bad)
        with pytest.raises(ConfigError):
            publish_postgres(table(D1, 2), URL, D1, table=bad)
