"""The behaviour report as one self-contained HTML page (the Jinja2 template ``report.html.j2``,
autoescaped): inline CSS, figures inlined as base64 PNG, no scripts and no external files, so it
reads offline.
"""

import base64
import math

from jinja2 import Environment, PackageLoader, select_autoescape

from nightrec.behavior.trends import HEADLINE_KEYS
from nightrec.layout import BEHAVIOR_JSON, CHURN_FILE

_TEMPLATE = Environment(
    loader=PackageLoader("nightrec.behavior", "."), autoescape=select_autoescape(default=True, default_for_string=True)
).get_template("report.html.j2")
_RATES = {"overall_conversion", "top10_share", "repeat_rate", "gini"}


def fmt(key: str, value) -> str:
    """A number as the report shows it: rates as percentages, counts with separators, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key in _RATES or key.endswith(("rate", "share")):
        return f"{value:.3f}" if key == "gini" else f"{value:.2%}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def change_text(entry: dict | None) -> str:
    if not entry or entry["change"] is None:
        return "–"
    rel = f" ({entry['relative']:+.1%})" if entry["relative"] is not None else ""
    return f"{entry['change']:+,.4g}{rel}"


def _dist_rows(items: list[tuple[str, dict]]) -> list[list]:
    return [
        [label, f"{d['mean']:.2f}", f"{d['median']:.2f}", f"{d['p90']:.2f}", f"{d['p99']:.2f}", f"{d['max']:.2f}"]
        for label, d in items
    ]


def _check_value(check: dict, value: float | None) -> str:
    if value is None:
        return "–"
    if check["metric"].startswith("conversion"):
        return f"{value:.2%}"
    return f"{value:.3f}" if check["metric"] == "item popularity" else f"{value:,.1f}"


def _check_change(check: dict, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:+.1%}" if check["distance"].startswith("relative") else f"{value:+.3f}"


def _check_band(check: dict) -> str:
    if check["distance"].startswith("relative"):
        return f"±{check['band']:.0%}"
    return f"> {check['band']:.3f}"


def _drift_rows(drift: dict) -> list[list]:
    return [
        [
            c["metric"],
            _check_value(c, c["current"]),
            _check_value(c, c["baseline"]),
            c["distance"],
            _check_change(c, c["change"]),
            _check_band(c),
            "yes" if c["flagged"] else "no",
        ]
        for c in drift["checks"]
    ]


def _funnel_context(funnel: dict) -> dict:
    conversions = [
        [f"{c['from']} → {c['to']}", fmt("rate", c["rate"]), fmt("rate", c["user_rate"])] for c in funnel["conversions"]
    ]
    if conversions:
        conversions.append(["overall (first → last present step)", fmt("rate", funnel["overall_conversion"]), ""])
    return {
        "funnel_steps": [[r["step"], f"{r['events']:,}", f"{r['users']:,}"] for r in funnel["steps"]],
        "conversions": conversions,
        "other_event_types": ", ".join(f"{k} ({v:,})" for k, v in funnel["other_event_types"].items()),
    }


def _activity_context(activity: dict, sessions: dict) -> dict:
    dist = [
        ("events per session", sessions["events_per_session"]),
        ("distinct items per session", sessions["items_per_session"]),
        ("session length (minutes)", sessions["length_minutes"]),
        ("sessions per user", sessions["sessions_per_user"]),
    ]
    return {
        "session_dist": _dist_rows(dist),
        "daily": [
            [r["day"], f"{r['active_users']:,}", f"{r['new_users']:,}", f"{r['returning_users']:,}", f"{r['events']:,}"]
            for r in activity["daily"]
        ],
        "weekly": [
            [r["week"] + (" (partial)" if r["partial"] else ""), f"{r['active_users']:,}", f"{r['events']:,}"]
            for r in activity["weekly"]
        ],
        "churn": activity["churn"],
    }


def _items_context(tail: dict, trans: dict, repeat: dict) -> dict:
    return {
        "long_tail": [
            [
                f"{tail['items']:,}",
                fmt("share", tail["top1_share"]),
                fmt("share", tail["top10_share"]),
                f"{tail['gini']:.3f}",
            ]
        ],
        "transitions": [
            [
                t["from_item"],
                t["to_item"],
                f"{t['count']:,}",
                fmt("share", t["share"]),
                fmt("share", t["share_of_from"]),
            ]
            for t in trans["top"]
        ],
        "repeat_rate": fmt("rate", repeat["repeat_rate"]),
        "cross_session_rate": fmt("rate", repeat["cross_session_repeat_rate"]),
    }


def render_html(metrics: dict, report: dict, figures: dict[str, bytes]) -> str:
    """The whole report as one HTML string with the figures inlined (``report.html.j2``, autoescaped)."""
    drift, change = metrics["drift"], report["change"]
    headline = [
        [k, fmt(k, report["headline"][k]), fmt(k, (change.get(k) or {}).get("previous")), change_text(change.get(k))]
        for k in HEADLINE_KEYS
    ]
    return _TEMPLATE.render(
        report=report,
        ov=metrics["overview"],
        activity=metrics["activity"],
        sessions=metrics["sessions"],
        funnel=metrics["funnel"],
        drift=drift,
        trans=metrics["transitions"],
        repeat=metrics["repeat"],
        figures={name: base64.b64encode(png).decode("ascii") for name, png in figures.items()},
        headline=headline,
        drift_css="note" if drift["status"] == "no_history" else "flag" if drift["flagged"] else "ok",
        drift_rows=_drift_rows(drift),
        churn_file=CHURN_FILE,
        behavior_json=BEHAVIOR_JSON,
        **_funnel_context(metrics["funnel"]),
        **_activity_context(metrics["activity"], metrics["sessions"]),
        **_items_context(metrics["long_tail"], metrics["transitions"], metrics["repeat"]),
    )
