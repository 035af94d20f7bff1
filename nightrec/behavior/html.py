"""The behaviour report as one self-contained HTML page: inline CSS, figures inlined as base64 PNG,
no scripts and no external files, so it reads offline.
"""

import base64
import html
import math

from nightrec.behavior.trends import HEADLINE_KEYS
from nightrec.layout import BEHAVIOR_JSON, CHURN_FILE

_RATES = {"overall_conversion", "top10_share", "repeat_rate", "gini"}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6rem 0;border:1px solid #eee}
.note{background:#fff8e1;border-left:4px solid #e0a82c;padding:.4rem .8rem}
.flag{background:#fdecea;border-left:4px solid #c62828;padding:.4rem .8rem}
.ok{background:#eaf5ea;border-left:4px solid #2e7d32;padding:.4rem .8rem}
.up{color:#2e7d32}.down{color:#c62828}
"""


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


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(figures: dict[str, bytes], name: str, alt: str) -> str:
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-figure="{name}">'


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


def render_html(metrics: dict, report: dict, figures: dict[str, bytes]) -> str:
    """The whole report as one HTML string with the figures inlined."""
    e = html.escape
    ov, funnel, sessions, activity = metrics["overview"], metrics["funnel"], metrics["sessions"], metrics["activity"]
    tail, trans, repeat, drift = metrics["long_tail"], metrics["transitions"], metrics["repeat"], metrics["drift"]
    change = report["change"]
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>nightrec behaviour report "
        f"{e(activity['last_day'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>nightrec behaviour report: {e(activity['first_day'])} to {e(activity['last_day'])}</h1>",
        f"<p>{ov['events']:,} events from {ov['users']:,} users on {ov['items']:,} items; sessions from "
        f"{e(ov['session_source'])} (timeout {ov['session_timeout_minutes']:g} min where no session_id). "
        f"{ov['rows_dropped_missing_key']:,} rows without a user, item, event type or timestamp were left out.</p>",
        "<h2>Headline</h2>",
        _table(
            ["metric", "tonight", "previous", "change"],
            [
                [
                    k,
                    fmt(k, report["headline"][k]),
                    fmt(k, (change.get(k) or {}).get("previous")),
                    change_text(change.get(k)),
                ]
                for k in HEADLINE_KEYS
            ],
        ),
    ]
    if report["previous_note"]:
        parts.append(f"<p class='note'>{e(report['previous_note'])}</p>")
    parts.append("<h2>Trend and drift</h2>")
    css = "note" if drift["status"] == "no_history" else "flag" if drift["flagged"] else "ok"
    parts.append(f"<p class='{css}'>{e(drift['message'])}</p>")
    if drift["checks"]:
        rows = [
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
        parts.append(
            f"<p>Last day {e(drift['last_day'])} against {drift['baseline_days_available']} earlier day(s).</p>"
        )
        parts.append(_table(["metric", "last day", "baseline", "distance", "change", "band", "flagged"], rows))

    parts += ["<h2>Funnel</h2>", _img(figures, "funnel", "funnel bars")]
    if funnel["message"]:
        parts.append(f"<p class='note'>{e(funnel['message'])}</p>")
    parts.append(
        _table(
            ["step", "events", "users"], [[r["step"], f"{r['events']:,}", f"{r['users']:,}"] for r in funnel["steps"]]
        )
    )
    if funnel["conversions"]:
        rows = [
            [f"{c['from']} → {c['to']}", fmt("rate", c["rate"]), fmt("rate", c["user_rate"])]
            for c in funnel["conversions"]
        ]
        rows.append(["overall (first → last present step)", fmt("rate", funnel["overall_conversion"]), ""])
        parts.append(_table(["conversion", "events", "users"], rows))
    if funnel["other_event_types"]:
        others = ", ".join(f"{k} ({v:,})" for k, v in funnel["other_event_types"].items())
        parts.append(f"<p>Event types outside the funnel: {e(others)}.</p>")

    parts += ["<h2>Sessions</h2>", _img(figures, "session_length", "session length histogram")]
    parts.append(_img(figures, "session_size", "events and items per session histograms"))
    dist = [
        ("events per session", sessions["events_per_session"]),
        ("distinct items per session", sessions["items_per_session"]),
        ("session length (minutes)", sessions["length_minutes"]),
        ("sessions per user", sessions["sessions_per_user"]),
    ]
    parts.append(
        f"<p>{sessions['sessions']:,} sessions, {sessions['single_event_sessions']:,} with a single event.</p>"
    )
    parts.append(_table(["distribution", "mean", "median", "p90", "p99", "max"], _dist_rows(dist)))

    parts += ["<h2>Activity</h2>", _img(figures, "daily_active_users", "daily active users")]
    parts.append(_img(figures, "user_activity", "sessions and events per user histograms"))
    parts.append("<p>New users are those whose first event falls on that day within the analysed window.</p>")
    daily = [
        [r["day"], f"{r['active_users']:,}", f"{r['new_users']:,}", f"{r['returning_users']:,}", f"{r['events']:,}"]
        for r in activity["daily"]
    ]
    parts.append(_table(["day", "active users", "new", "returning", "events"], daily))
    weekly = [
        [r["week"] + (" (partial)" if r["partial"] else ""), f"{r['active_users']:,}", f"{r['events']:,}"]
        for r in activity["weekly"]
    ]
    parts.append(_table(["week starting", "weekly active users", "events"], weekly))
    churn = activity["churn"]
    parts.append(
        f"<p>Churn candidates (no event for more than {churn['inactive_days']} days before {e(churn['reference'])}): "
        f"{churn['candidates']:,} users ({churn['share']:.1%}); the list is in {CHURN_FILE}.</p>"
    )
    if churn["note"]:
        parts.append(f"<p class='note'>{e(churn['note'])}</p>")

    parts += ["<h2>Item long tail</h2>", _img(figures, "long_tail", "long tail curve")]
    parts.append(
        _table(
            ["items", "top 1% share", "top 10% share", "Gini"],
            [
                [
                    f"{tail['items']:,}",
                    fmt("share", tail["top1_share"]),
                    fmt("share", tail["top10_share"]),
                    f"{tail['gini']:.3f}",
                ]
            ],
        )
    )

    parts += ["<h2>Transitions: what users view next</h2>", _img(figures, "transitions", "transition table")]
    parts.append(
        f"<p>{trans['transitions']:,} moves between different consecutive {e(trans['event_type'])} events within a session; {trans['distinct_pairs']:,} distinct pairs.</p>"
    )
    parts.append(
        _table(
            ["from item", "next item", "count", "share of all", "share of from-item"],
            [
                [
                    t["from_item"],
                    t["to_item"],
                    f"{t['count']:,}",
                    fmt("share", t["share"]),
                    fmt("share", t["share_of_from"]),
                ]
                for t in trans["top"]
            ],
        )
    )
    parts.append("<h2>Repeat consumption</h2>")
    parts.append(
        f"<p>Of {repeat['events']:,} {e(repeat['event_type'])} events, {fmt('rate', repeat['repeat_rate'])} revisit an item "
        f"the user already had; {fmt('rate', repeat['cross_session_repeat_rate'])} of {repeat['user_item_pairs']:,} "
        "user-item pairs recur in two or more sessions.</p>"
    )
    parts.append(
        f"<p><small>Generated {e(report['generated_at'])} by nightrec; every number is in {BEHAVIOR_JSON}.</small></p></body></html>"
    )
    return "\n".join(parts)
