"""The behaviour report: ``report.html``, ``behavior.json`` with every number, ``figures/*.png``,
``churn_candidates.parquet`` and a Markdown summary for the nightly flow's artifacts.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nightrec.behavior.analyze import analyze_events, load_events
from nightrec.behavior.figures import render_figures
from nightrec.behavior.html import change_text, fmt, render_html
from nightrec.behavior.trends import HEADLINE_KEYS, compare_headline, headline, read_previous
from nightrec.config import NightrecConfig
from nightrec.layout import BEHAVIOR_JSON, CHURN_FILE, FIGURES_DIR, REPORT_HTML


def funnel_summary(funnel: dict) -> str:
    """One line: the conversion between consecutive present steps, and which steps are absent."""
    steps = ", ".join(f"{c['from']} → {c['to']} {fmt('rate', c['rate'])}" for c in funnel["conversions"])
    line = steps or "no conversion"
    return f"{line} ({funnel['message']})" if funnel["message"] else line


def markdown_summary(report: dict) -> str:
    """The headline table with the change against the previous night, the funnel and the drift verdict."""
    head, change = report["headline"], report["change"]
    lines = [f"# Behaviour report {report['last_day']}", ""]
    lines += ["| metric | tonight | previous | change |", "|---|---:|---:|---:|"]
    for key in HEADLINE_KEYS:
        entry = change.get(key)
        previous = fmt(key, entry["previous"]) if entry else "–"
        lines.append(f"| {key} | {fmt(key, head[key])} | {previous} | {change_text(entry)} |")
    if report["previous_note"]:
        lines += ["", f"_{report['previous_note']}_"]
    lines += ["", f"**Funnel:** {report['funnel_summary']}"]
    lines += ["", f"**{'DRIFT' if report['drift'] else 'Trend'}:** {report['drift_message']}"]
    return "\n".join(lines) + "\n"


def write_behavior_report(
    events: Path | pl.DataFrame, out_dir: Path, config: NightrecConfig | None = None, previous: Path | None = None
) -> dict:
    """Analyse ``events`` and write report.html, behavior.json, figures/*.png and churn_candidates.parquet.

    ``previous`` is last night's behavior.json (or its folder); missing is fine, it only means no change
    column. Returns ``headline``, ``change`` (per headline number against ``previous``), ``markdown``,
    ``drift`` (bool), ``drift_message``, ``drift_reasons``, ``figures`` (name -> PNG path) and the paths.
    Raises ``InputError`` for empty or unusable events.
    """
    config = config or NightrecConfig()
    out_dir = Path(out_dir)
    metrics, churn = analyze_events(load_events(events, config.format), config)
    figures = render_figures(metrics)
    head = headline(metrics)
    previous_headline, previous_note = read_previous(previous)
    drift = metrics["drift"]
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_day": metrics["activity"]["last_day"],
        "headline": head,
        "change": compare_headline(head, previous_headline),
        "previous": str(previous) if previous is not None else None,
        "previous_note": previous_note,
        "drift": bool(drift["flagged"]),
        "drift_message": drift["message"],
        "drift_reasons": drift["reasons"],
        "funnel_summary": funnel_summary(metrics["funnel"]),
        "absent_funnel_steps": metrics["funnel"]["absent"],
    }
    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    figure_paths = {}
    for name, png in figures.items():
        figure_paths[name] = out_dir / FIGURES_DIR / f"{name}.png"
        figure_paths[name].write_bytes(png)
    churn.write_parquet(out_dir / CHURN_FILE)
    source = str(events) if isinstance(events, str | Path) else "DataFrame"
    document = {
        **{k: report[k] for k in ("generated_at", "headline", "change", "previous", "previous_note")},
        "source": source,
        "config": config.behavior.model_dump(mode="json"),
        **metrics,
        "figures": {name: f"{FIGURES_DIR}/{name}.png" for name in figures},
    }
    (out_dir / BEHAVIOR_JSON).write_text(json.dumps(document, indent=2, default=str))
    (out_dir / REPORT_HTML).write_text(render_html(metrics, report, figures), encoding="utf-8")
    return {
        **report,
        "markdown": markdown_summary(report),
        "figures": figure_paths,
        "report_html": out_dir / REPORT_HTML,
        "behavior_json": out_dir / BEHAVIOR_JSON,
        "churn_candidates": out_dir / CHURN_FILE,
    }


def drift_flagged(report: dict) -> bool:
    """Whether a report (``write_behavior_report``'s result or a loaded behavior.json) flags drift."""
    flag = report.get("drift")
    return bool(flag["flagged"] if isinstance(flag, dict) else flag)
