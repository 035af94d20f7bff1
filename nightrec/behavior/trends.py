"""Trends of the behaviour report: drift of the last day against the trailing baseline, headline
numbers, and their change against the previous night's ``behavior.json``.

Drift compares the last day of data with the days before it (at most ``baseline_days``): event
volume, active users and funnel conversion by relative change against the baseline (mean per day
for volumes, pooled rate for conversion), and the item popularity distribution by Jensen-Shannon
distance (base 2). Each has its band in ``BehaviorConfig.drift_bands``.
"""

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from nightrec.config import BehaviorConfig
from nightrec.layout import BEHAVIOR_DIR, BEHAVIOR_JSON, latest_earlier_run
from nightrec.schema import ITEM_ID

HEADLINE_KEYS = (
    "events",
    "users",
    "items",
    "sessions",
    "days",
    "last_day_events",
    "last_day_active_users",
    "last_day_new_users",
    "mean_daily_active_users",
    "overall_conversion",
    "median_session_minutes",
    "mean_events_per_session",
    "top10_share",
    "gini",
    "repeat_rate",
    "churn_candidates",
)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors over the same items."""
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def _relative_check(name: str, current: float | None, baseline: float | None, band: float, unit: str) -> dict:
    check = {"metric": name, "current": current, "baseline": baseline, "band": band, "distance": "relative change"}
    if current is None or baseline is None or baseline == 0:
        return {**check, "change": None, "flagged": False, "note": f"no {unit} on the last day or baseline"}
    change = (current - baseline) / baseline
    return {**check, "change": change, "flagged": abs(change) > band}


def drift_metrics(
    daily_activity: list[dict], funnel_per_day: list[dict], item_days: pl.DataFrame, config: BehaviorConfig
) -> dict:
    """Compare the last day with the trailing baseline; ``flagged`` when any metric leaves its band.

    ``item_days`` holds ``day`` (Date), ``item_id`` and ``len`` (events per item and day).
    """
    days = [date.fromisoformat(row["day"]) for row in daily_activity]
    last = max(days)
    start = last - timedelta(days=config.baseline_days)
    baseline_days = [d for d in days if start <= d < last]
    base = {
        "last_day": last.isoformat(),
        "baseline_from": start.isoformat(),
        "baseline_days_available": len(baseline_days),
        "baseline_days": config.baseline_days,
    }
    if len(baseline_days) < config.min_history_days:
        message = (
            f"no history yet: {len(baseline_days)} day(s) of data before {last.isoformat()}, "
            f"a trend needs {config.min_history_days}"
        )
        return {**base, "status": "no_history", "flagged": False, "message": message, "checks": [], "reasons": []}

    by_day = {date.fromisoformat(row["day"]): row for row in daily_activity}
    drift = config.drift_bands
    checks = []
    for key, band in (("events", drift.events), ("active_users", drift.active_users)):
        baseline = float(np.mean([by_day[d][key] for d in baseline_days]))
        checks.append(_relative_check(key, float(by_day[last][key]), baseline, band, key))

    funnel_by_day = {date.fromisoformat(row["day"]): row for row in funnel_per_day}
    steps = list(funnel_per_day[0]["events"]) if funnel_per_day else []
    if len(steps) >= 2:
        first, final = steps[0], steps[-1]
        last_row = funnel_by_day.get(last)
        current = last_row["overall"] if last_row else None
        num = sum(funnel_by_day[d]["events"][final] for d in baseline_days if d in funnel_by_day)
        den = sum(funnel_by_day[d]["events"][first] for d in baseline_days if d in funnel_by_day)
        check = _relative_check(
            f"conversion {first}->{final}", current, num / den if den else None, drift.conversion, "conversion"
        )
        checks.append(check)

    checks.append(_popularity_check(item_days, last, baseline_days, drift.popularity_js))
    reasons = [_reason(c) for c in checks if c["flagged"]]
    message = "drift: " + "; ".join(reasons) if reasons else "no drift: every headline metric is within its band"
    return {**base, "status": "ok", "flagged": bool(reasons), "message": message, "checks": checks, "reasons": reasons}


def _popularity_check(item_days: pl.DataFrame, last: date, baseline_days: list[date], band: float) -> dict:
    """How far the last day's item distribution is from the trailing days', beyond sampling noise.

    A day's distance to the pooled other days is never zero (a day is a sample), and it grows as days
    get smaller; so the baseline is the mean leave-one-out distance of each trailing day to the rest,
    and the check flags when the last day's distance to the whole trailing window exceeds it by ``band``.
    """
    window = item_days.filter(pl.col("day").is_in([*baseline_days, last]))
    items = window.select(ITEM_ID).unique().with_row_index("col")
    order = {day: row for row, day in enumerate([*baseline_days, last])}
    cells = window.join(items, on=ITEM_ID).select(pl.col("day").replace_strict(order).alias("row"), "col", "len")
    matrix = np.zeros((len(order), items.height))
    matrix[cells["row"].to_numpy(), cells["col"].to_numpy()] = cells["len"].to_numpy()
    trailing = matrix[:-1].sum(axis=0)
    current = js_distance(matrix[-1], trailing)
    noise = [
        js_distance(matrix[i], trailing - matrix[i])
        for i in range(len(baseline_days))
        if trailing.sum() > matrix[i].sum()
    ]
    baseline = float(np.mean(noise)) if noise else 0.0
    return {
        "metric": "item popularity",
        "current": current,
        "baseline": baseline,
        "band": band,
        "distance": "Jensen-Shannon distance (base 2) above the trailing days' own",
        "change": current - baseline,
        "flagged": current - baseline > band,
    }


def _reason(check: dict) -> str:
    if check["distance"].startswith("relative"):
        return f"{check['metric']} moved {check['change']:+.1%} against the trailing mean (band ±{check['band']:.0%})"
    return (
        f"{check['metric']} moved: Jensen-Shannon distance {check['current']:.3f} to the trailing days, "
        f"{check['change']:+.3f} above their own {check['baseline']:.3f} (band {check['band']})"
    )


def headline(metrics: dict) -> dict:
    """The numbers a reader looks at first, flat, for the summary and the night-to-night change."""
    activity = metrics["activity"]
    last = activity["daily"][-1]
    sessions = metrics["sessions"]
    values = {
        "events": metrics["overview"]["events"],
        "users": metrics["overview"]["users"],
        "items": metrics["overview"]["items"],
        "sessions": sessions["sessions"],
        "days": activity["days"],
        "last_day_events": last["events"],
        "last_day_active_users": last["active_users"],
        "last_day_new_users": last["new_users"],
        "mean_daily_active_users": activity["mean_daily_active_users"],
        "overall_conversion": metrics["funnel"]["overall_conversion"],
        "median_session_minutes": sessions["length_minutes"]["median"],
        "mean_events_per_session": sessions["events_per_session"]["mean"],
        "top10_share": metrics["long_tail"]["top10_share"],
        "gini": metrics["long_tail"]["gini"],
        "repeat_rate": metrics["repeat"]["repeat_rate"],
        "churn_candidates": activity["churn"]["candidates"],
    }
    return {key: values[key] for key in HEADLINE_KEYS}


def read_previous(previous: Path | None) -> tuple[dict | None, str | None]:
    """The previous night's headline from its ``behavior.json`` (a file or the folder holding it).

    A missing or unreadable file is not an error for tonight's report; the second value says why
    there is no comparison.
    """
    if previous is None:
        return None, "no previous report given"
    path = Path(previous)
    path = path / BEHAVIOR_JSON if path.is_dir() else path
    if not path.is_file():
        return None, f"no previous report at {path}"
    try:
        data = json.loads(path.read_text())
        return dict(data["headline"]), None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return None, f"previous report {path} is unreadable ({type(exc).__name__}: {exc})"


def compare_headline(current: dict, previous: dict | None) -> dict:
    """Per headline number: previous, current, absolute and relative change (``None`` where undefined)."""
    if previous is None:
        return {}
    change = {}
    for key, now in current.items():
        before = previous.get(key)
        if not isinstance(now, int | float) or not isinstance(before, int | float):
            change[key] = {"previous": before, "current": now, "change": None, "relative": None}
            continue
        delta = now - before
        change[key] = {
            "previous": before,
            "current": now,
            "change": delta,
            "relative": delta / before if before else None,
        }
    return change


def previous_report(runs_dir: Path, run_date: date, subdir: str = BEHAVIOR_DIR) -> Path | None:
    """The newest ``runs/<date>/<subdir>/behavior.json`` strictly before ``run_date``, if any."""
    return latest_earlier_run(runs_dir, run_date, f"{subdir}/{BEHAVIOR_JSON}")
