"""The nightly report's model table: one row per model judged tonight and split, one column per
headline metric, and the change of NDCG@10 against the served popularity (plain data: the flow
turns it into a Prefect table artifact)."""

from typing import Any

HEADLINE = ("recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20", "mrr@20", "coverage@10", "coverage@20")
# The cold-start slices (``nightrec.evaluation.metrics.slice_masks``), each beside its size: a
# recall over a handful of cold targets is noise, and the count says so.
COLD_SLICES = (("cold_users/ndcg@10", "cold_users/users"), ("cold_items/recall@20", "cold_items/targets"))
GATE_METRIC = "ndcg@10"
# Below this relative lead over the served popularity, the model barely earns its keep: say so.
SMALL_MARGIN = 0.05
DIGITS = 4


def _splits(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return block if any(isinstance(v, dict) for v in block.values()) else {"valid": block}


def _models(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(row name, metrics by split)`` of every model judged tonight, in the table's order.

    With ``model.family: auto`` each candidate family has its row (the served one marked) and the
    last-item kNN baseline measured on the same validation users closes the table.
    """
    candidate = metrics.get("candidate") or {}
    selection = candidate.get("selection") or {}
    rows = [
        (f"candidate {family}" + (" (selected)" if s["selected"] else ""), {"valid": s["valid"], "test": s["test"]})
        for family, s in selection.items()
        if "skipped" not in s
    ] or [("candidate", candidate)]
    rows += [("champion", metrics.get("champion") or {}), ("popularity", metrics.get("popularity") or {})]
    rows += [(name, {"valid": values}) for name, values in (candidate.get("baselines") or {}).items()]
    return rows


def metric_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model and split, one column per headline metric (rounded), the cold users'
    NDCG@10 and the cold items' Recall@20 with their sizes ("-" for an empty slice) where
    measured, and the change of NDCG@10 against the served popularity on the same split. The
    other slices (``short/...``, ``masked/...``) stay in ``metrics.json``."""
    popularity = _splits(metrics.get("popularity") or {})
    rows = []
    for model, block in _models(metrics):
        for split, values in _splits(block).items() if block else ():
            if split not in ("valid", "test"):
                continue
            row: dict[str, Any] = {"model": model, "split": split}
            row |= {name: round(float(values[name]), DIGITS) for name in HEADLINE if name in values}
            row |= _cold_cells(values)
            base = (popularity.get(split) or {}).get(GATE_METRIC)
            row[f"{GATE_METRIC} vs popularity"] = (
                _change(values.get(GATE_METRIC), base) if model != "popularity" else "-"
            )
            rows.append(row)
    return rows


def _cold_cells(values: dict[str, Any]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for name, size in COLD_SLICES:
        if size in values:
            cells[name] = round(float(values[name]), DIGITS) if values[size] else "-"
            cells[size] = int(values[size])
    return cells


def _change(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{(value - base) / base:+.1%}"


def margin_warning(metrics: dict[str, Any]) -> str | None:
    """A warning when tonight's model (the candidate, else the champion) leads the served popularity
    by less than ``SMALL_MARGIN`` of its validation NDCG@10, or trails it."""
    base = (_splits(metrics.get("popularity") or {}).get("valid") or {}).get(GATE_METRIC)
    for model in ("candidate", "champion"):
        value = (_splits(metrics.get(model) or {}).get("valid") or {}).get(GATE_METRIC)
        if value is not None and base:
            if value < base * (1 + SMALL_MARGIN):
                return (
                    f"the {model}'s validation NDCG@10 ({value:.{DIGITS}f}) is {_change(value, base)} against the served "
                    f"popularity ({base:.{DIGITS}f}): under the {SMALL_MARGIN:.0%} margin, the model adds little tonight"
                )
            return None
    return None
