"""Keyed pseudonyms of user ids: HMAC-SHA256 under ``privacy.key``.

The same id and key always give the same pseudonym, so lists, sequences and models built on
pseudonyms line up night after night; without the key a pseudonym cannot be tied back to a
person or recomputed from a guessed id.
"""

import hashlib
import hmac

import polars as pl
from pydantic import SecretStr

from nightrec.config import PrivacyConfig
from nightrec.errors import ConfigError
from nightrec.schema import SESSION_ID, USER_ID

PSEUDONYM_HEX = 32  # 128 bits of the HMAC: collisions are out of reach for any user base
_KEY_ID_MESSAGE = b"nightrec key id"


def pseudonym(user_id: str, key: SecretStr) -> str:
    """The pseudonym of one user id under ``key``."""
    digest = hmac.new(key.get_secret_value().encode(), str(user_id).encode(), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_HEX]


def key_id(key: SecretStr | None) -> str | None:
    """A short public name for a key (never the key): which key made a pseudonym or a cache entry."""
    if key is None:
        return None
    return hmac.new(key.get_secret_value().encode(), _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:12]


def require_key(privacy: PrivacyConfig, why: str) -> SecretStr:
    if privacy.key is None:
        raise ConfigError(
            f"{why} needs privacy.key: set NIGHTREC_PRIVACY__KEY or name a Prefect Secret block in privacy.key_block"
        )
    return privacy.key


def pseudonym_map(ids: pl.Series, key: SecretStr) -> pl.DataFrame:
    """``user_id`` -> ``pseudonym`` for the distinct non-null ids of ``ids`` (one HMAC per user)."""
    distinct = ids.drop_nulls().cast(pl.String).unique()
    secret = key.get_secret_value().encode()
    hashed = [hmac.new(secret, u.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX] for u in distinct]
    return pl.DataFrame({USER_ID: distinct, "pseudonym": hashed}, schema={USER_ID: pl.String, "pseudonym": pl.String})


def pseudonymize(events: pl.DataFrame, key: SecretStr) -> pl.DataFrame:
    """``events`` with ``user_id`` and ``session_id`` (which often embeds the user id) replaced by
    their pseudonyms. Null and blank values stay as they are: validation quarantines them, and
    they identify no one."""
    columns = []
    for column in (USER_ID, SESSION_ID):
        if column not in events.columns:
            continue
        values = events.get_column(column).cast(pl.String)
        mapping = pseudonym_map(values.filter(values.str.strip_chars() != ""), key)
        lookup = dict(zip(mapping.get_column(USER_ID), mapping.get_column("pseudonym"), strict=True))
        text = pl.col(column).cast(pl.String)
        columns.append(text.replace_strict(lookup, default=text, return_dtype=pl.String).alias(column))
    return events.with_columns(columns)


def matching_ids(ids: pl.Series, target: str, key: SecretStr) -> set[str]:
    """The values of ``ids`` that are ``target`` or whose pseudonym is ``target``: how a user is
    found by pseudonym in files written with or without pseudonymisation."""
    mapping = pseudonym_map(ids, key)
    hits = mapping.filter((pl.col("pseudonym") == target) | (pl.col(USER_ID) == target))
    return set(hits.get_column(USER_ID).to_list())


def with_external_ids(table: pl.DataFrame, source_ids: pl.Series, key: SecretStr) -> pl.DataFrame:
    """``table`` keyed by the source's user ids instead of pseudonyms (``privacy.publish_external_ids``):
    each pseudonym is matched with the id in ``source_ids`` it was made from."""
    mapping = pseudonym_map(source_ids, key).rename({USER_ID: "__external", "pseudonym": USER_ID})
    joined = table.join(mapping, on=USER_ID, how="left", maintain_order="left")
    return joined.with_columns(pl.coalesce("__external", USER_ID).alias(USER_ID)).drop("__external")
