"""Item vectors from attribute tables: every attribute becomes tokens, the tokens a sparse vector.

A categorical value is one token (``brand=acme``), each element of a list one token
(``genre=Comedy``), each word of a text one token (``title:red``), a numeric value its quantile
bucket (``year#3``). ``tfidf_vectors`` weighs them with scikit-learn's TF-IDF (content-based
lists, fitted on the night's table); ``hashed_vectors`` hashes them into a fixed width with no
fitted state, so the same item gets the same vector on every night (the hybrid embeddings).
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from nightrec.metadata.tables import CATEGORICAL, LIST, NUMERIC, TEXT, AttributeTable

TOKENS = "__tokens"


def _column_tokens(column: str, kind: str, bins: int) -> pl.Expr:
    col = pl.col(column)
    if kind == CATEGORICAL:
        return pl.concat_list(pl.lit(f"{column}=") + col.cast(pl.String).str.strip_chars())
    if kind == LIST:
        return col.list.eval(pl.lit(f"{column}=") + pl.element().cast(pl.String).str.strip_chars())
    if kind == TEXT:
        return col.str.to_lowercase().str.extract_all(r"\w+").list.eval(pl.lit(f"{column}:") + pl.element())
    if kind == NUMERIC:
        bucket = col.cast(pl.Float64).rank("dense").cast(pl.Float64) / col.n_unique().cast(pl.Float64)
        return pl.concat_list(pl.lit(f"{column}#") + (bucket * bins).ceil().cast(pl.Int64).cast(pl.String))
    raise ValueError(f"unknown attribute kind {kind!r} of column {column!r}")


def item_tokens(table: AttributeTable, bins: int = 10) -> list[list[str]]:
    """Each row's tokens; nulls and empty values give none (a row may have no token)."""
    if not table.kinds:
        return [[] for _ in range(table.frame.height)]
    # a null list (a missing text or list value) would make the whole row's concatenation null
    empty = pl.lit([], dtype=pl.List(pl.String))
    parts = [_column_tokens(c, k, bins).fill_null(empty) for c, k in table.kinds.items()]
    tokens = (
        table.frame.select(pl.concat_list(parts).alias(TOKENS))
        .get_column(TOKENS)
        .list.eval(pl.element().filter(pl.element().is_not_null() & ~pl.element().str.contains(r"[=:#]$")))
    )
    return [list(row) if row is not None else [] for row in tokens.to_list()]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


@dataclass(frozen=True)
class ItemVectors:
    """Row i of ``matrix`` (L2-normalised, CSR) is the vector of ``item_ids[i]``."""

    item_ids: list[str]
    matrix: sparse.csr_matrix

    def rows(self, item_ids: list[str]) -> sparse.csr_matrix:
        """The vectors of ``item_ids`` in that order; an id without attributes gets a zero row."""
        index = {item: i for i, item in enumerate(self.item_ids)}
        picked = np.array([index.get(item, -1) for item in item_ids], dtype=np.int64)
        known = np.flatnonzero(picked >= 0)
        select = sparse.csr_matrix(
            (np.ones(known.size, dtype=np.float32), (known, picked[known])),
            shape=(len(item_ids), len(self.item_ids)),
        )
        return (select @ self.matrix).tocsr()


def tfidf_vectors(table: AttributeTable, bins: int = 10) -> ItemVectors:
    """TF-IDF per attribute (sublinear term counts, smoothed idf, each attribute's block L2-normalised),
    the blocks side by side and the row L2-normalised: every attribute an item has weighs the same,
    so a title's many rare words do not drown its one category."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    tokens = item_tokens(table, bins)
    if not any(tokens):
        raise ValueError(f"{table.path}: no attribute values to build item vectors from")
    blocks = []
    for column in table.kinds:
        mine = [
            [t for t in row if t[len(column) : len(column) + 1] in "=:#" and t.startswith(column)] for row in tokens
        ]
        if any(mine):
            vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, dtype=np.float32)
            blocks.append(vectorizer.fit_transform(mine))
    matrix = normalize(sparse.hstack(blocks).tocsr()).astype(np.float32)
    return ItemVectors(table.ids.to_list(), matrix)


def hashed_vectors(table: AttributeTable, n_features: int, bins: int = 10) -> ItemVectors:
    """Token counts hashed into ``n_features`` columns and L2-normalised; no fitted state."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer=_identity, n_features=n_features, alternate_sign=False, dtype=np.float32)
    return ItemVectors(table.ids.to_list(), vectorizer.transform(item_tokens(table, bins)).tocsr())
