"""Figures of the behaviour report, drawn from the metrics dict alone (every plotted number is in
``behavior.json``) with matplotlib's object API on the Agg canvas, so no display or pyplot state is used.
"""

import io

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

FIGURES = (
    "funnel",
    "session_length",
    "session_size",
    "user_activity",
    "daily_active_users",
    "long_tail",
    "transitions",
)
_BLUE, _ORANGE, _GREY = "#3b6ea8", "#e08a2c", "#9a9a9a"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _histogram(ax, dist: dict, xlabel: str, ylabel: str, title: str) -> None:
    edges, counts = np.asarray(dist["edges"]), np.asarray(dist["counts"])
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_BLUE, edgecolor="white", linewidth=0.4)
    if dist["log_scale"]:
        ax.set_xscale("log")
        xlabel += " (log scale)"
        if dist["zeros"]:
            title += f"\n{dist['zeros']} at zero not shown on the log axis"
    positive = counts[counts > 0]
    if positive.size and positive.max() / positive.min() > 1000:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.axvline(dist["median"], color=_ORANGE, linestyle="--", linewidth=1, label=f"median {dist['median']:.3g}")
    ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def funnel_figure(funnel: dict) -> bytes:
    """Events per funnel step; absent steps are labelled, conversion between present steps annotated."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    steps = [row["step"] for row in funnel["steps"]]
    events = [row["events"] for row in funnel["steps"]]
    bars = ax.bar(steps, events, width=0.55, color=[_BLUE if e > 0 else _GREY for e in events])
    top = max(events)
    for bar, value in zip(bars, events, strict=True):
        label = f"{value:,}" if value > 0 else "absent"
        ax.text(bar.get_x() + bar.get_width() / 2, max(value, top * 0.02), label, ha="center", va="bottom", fontsize=9)
    position = {step: i for i, step in enumerate(steps)}
    for conv in funnel["conversions"]:
        if conv["rate"] is None:
            continue
        x = (position[conv["from"]] + position[conv["to"]]) / 2
        y = events[position[conv["to"]]] + top * 0.12
        ax.text(x, y, f"→ {conv['rate']:.1%}", ha="center", fontsize=9, color=_ORANGE, fontweight="bold")
    ax.set_ylim(0, max(top, 1) * 1.12)
    ax.set_ylabel("events")
    ax.set_xlabel("funnel step (event type)")
    title = "Funnel: events per step (orange: conversion from the previous present step)"
    if funnel["absent"]:
        title += f"\nabsent: {', '.join(funnel['absent'])}"
    ax.set_title(title, fontsize=10)
    return _png(fig)


def session_length_figure(sessions: dict) -> bytes:
    fig = Figure(figsize=(7, 4), layout="constrained")
    _histogram(
        fig.add_subplot(),
        sessions["length_minutes"],
        "session length (minutes, first to last event)",
        "sessions",
        f"Session length ({sessions['sessions']:,} sessions)",
    )
    return _png(fig)


def _histogram_pair(left: tuple, right: tuple) -> bytes:
    """Two histograms side by side; each panel is ``_histogram``'s arguments after the axes."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, panel in zip(fig.subplots(1, 2), (left, right), strict=True):
        _histogram(ax, *panel)
    return _png(fig)


def session_size_figure(sessions: dict) -> bytes:
    return _histogram_pair(
        (sessions["events_per_session"], "events per session", "sessions", "Events per session"),
        (sessions["items_per_session"], "distinct items per session", "sessions", "Items per session"),
    )


def user_activity_figure(sessions: dict, activity: dict) -> bytes:
    return _histogram_pair(
        (sessions["sessions_per_user"], "sessions per user", "users", "Sessions per user"),
        (activity["events_per_user"], "events per user", "users", "Events per user"),
    )


def daily_active_users_figure(activity: dict, drift: dict) -> bytes:
    """New and returning users stacked per day; says so when a single day gives no trend."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    days = [row["day"] for row in activity["daily"]]
    new = np.array([row["new_users"] for row in activity["daily"]])
    returning = np.array([row["returning_users"] for row in activity["daily"]])
    x = np.arange(len(days))
    ax.bar(x, returning, color=_BLUE, label="returning users")
    ax.bar(x, new, bottom=returning, color=_ORANGE, label="new users")
    step = max(1, len(days) // 12)
    ax.set_xticks(x[::step], days[::step], rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("day (UTC)")
    ax.set_ylabel("active users per day")
    ax.legend(frameon=False, fontsize=8)
    title = "Daily active users (new vs returning)"
    if drift["status"] == "no_history":
        title += "\n" + drift["message"]
    ax.set_title(title, fontsize=10)
    return _png(fig)


def long_tail_figure(tail: dict) -> bytes:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    curve = tail["curve"]
    ax.plot([0, *curve["item_fraction"]], [0, *curve["event_share"]], color=_BLUE, label="observed")
    ax.plot([0, 1], [0, 1], color=_GREY, linestyle=":", label="equal popularity")
    for fraction, key in ((0.01, "top1_share"), (0.10, "top10_share")):
        ax.plot([fraction], [tail[key]], "o", color=_ORANGE)
        ax.annotate(
            f"top {fraction:.0%}: {tail[key]:.1%}", (fraction, tail[key]), xytext=(8, -12), textcoords="offset points"
        )
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of items, most popular first")
    ax.set_ylabel("cumulative share of events")
    ax.set_title(f"Item long tail ({tail['items']:,} items, Gini {tail['gini']:.3f})", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _png(fig)


def transitions_figure(transitions: dict) -> bytes:
    """The most frequent next-item moves as a table."""
    rows = transitions["top"]
    fig = Figure(figsize=(8, 0.6 + 0.28 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    title = f"Most frequent item-to-next-item transitions ({transitions['event_type']} events within a session)"
    ax.set_title(title, fontsize=10)
    if not rows:
        ax.text(0.5, 0.5, "no transitions: no session has two different consecutive items", ha="center")
        return _png(fig)
    cells = [
        [str(i), r["from_item"], r["to_item"], f"{r['count']:,}", f"{r['share']:.2%}", f"{r['share_of_from']:.1%}"]
        for i, r in enumerate(rows, 1)
    ]
    columns = ["#", "from item", "next item", "count", "share of all", "share of from-item"]
    table = ax.table(cellText=cells, colLabels=columns, cellLoc="center", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    return _png(fig)


def render_figures(metrics: dict) -> dict[str, bytes]:
    """Every figure of the report as PNG bytes, keyed by the names in ``FIGURES``.

    Labels hold data (item ids, event types): mathtext is off so ``$...$`` in an id is drawn as
    typed instead of failing the figure or turning ``$5 and $10`` into math.
    """
    with rc_context({"text.parse_math": False}):
        return _render(metrics)


def _render(metrics: dict) -> dict[str, bytes]:
    return {
        "funnel": funnel_figure(metrics["funnel"]),
        "session_length": session_length_figure(metrics["sessions"]),
        "session_size": session_size_figure(metrics["sessions"]),
        "user_activity": user_activity_figure(metrics["sessions"], metrics["activity"]),
        "daily_active_users": daily_active_users_figure(metrics["activity"], metrics["drift"]),
        "long_tail": long_tail_figure(metrics["long_tail"]),
        "transitions": transitions_figure(metrics["transitions"]),
    }
