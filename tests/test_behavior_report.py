"""The behaviour report end to end: files, embedded figures, headless Chromium, MovieLens, the CLI."""

import base64
import io
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from nightrec.behavior.figures import FIGURES
from nightrec.behavior.report import drift_flagged, write_behavior_report
from nightrec.errors import InputError
from nightrec.ingest.readers import read_events
from nightrec.schema import EVENT_SCHEMA
from tests.behavior_fixtures import daily_log, funnel_log

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MOVIELENS = ROOT / "bench-data" / "ml-100k" / "ml-100k.inter"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs))


def _images(html: str) -> _Images:
    parser = _Images()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def demo_report(demo_events, tmp_path_factory):
    out = tmp_path_factory.mktemp("behavior")
    return write_behavior_report(demo_events[0], out), out


def test_report_writes_every_file_and_returns_the_headline(demo_report, demo_events):
    report, out = demo_report
    assert (out / "report.html").is_file() and (out / "churn_candidates.parquet").is_file()
    assert sorted(report["figures"]) == sorted(FIGURES)
    assert all(path.is_file() and path.read_bytes().startswith(PNG_MAGIC) for path in report["figures"].values())
    document = json.loads((out / "behavior.json").read_text())
    assert document["headline"] == report["headline"]
    events = read_events(demo_events[0])
    assert document["overview"]["events"] == events.height == report["headline"]["events"]
    assert document["overview"]["users"] == events["user_id"].n_unique()
    steps = {row["step"]: row["events"] for row in document["funnel"]["steps"]}
    assert steps == dict(events.group_by("event_type").len().iter_rows())
    assert report["drift"] is False and drift_flagged(report) is False and drift_flagged(document) is False
    assert "| events |" in report["markdown"] and "no previous report given" in report["markdown"]


def test_every_figure_is_embedded_as_a_decodable_png(demo_report):
    _, out = demo_report
    html = (out / "report.html").read_text()
    page = _images(html)
    assert len(page.images) == len(FIGURES)
    assert {img["data-figure"] for img in page.images} == set(FIGURES)
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img["src"][:60]
        png = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert png.startswith(PNG_MAGIC)
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert np.ptp(pixels[..., :3]) > 0, f"{img['data-figure']} is a blank image"
        assert img.get("alt")
    # Self-contained: nothing to fetch, nothing to run.
    assert not {"script", "link", "iframe"} & page.tags
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html)


@pytest.mark.integration
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed; run make chromium")
def test_report_renders_every_figure_in_headless_chromium(demo_report, tmp_path):
    _, out = demo_report
    # A copy of the page with a probe that records, after load, each image's decoded size in the DOM.
    probe = (
        "<script>addEventListener('load',()=>{for(const i of document.images)"
        "{i.setAttribute('data-natural',i.complete?i.naturalWidth+'x'+i.naturalHeight:'pending')}"
        "document.body.setAttribute('data-probed','yes')})</script></body>"
    )
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", probe))
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _images(done.stdout)
    assert 'data-probed="yes"' in done.stdout, "the page's load event never fired"
    sizes = {img["data-figure"]: img.get("data-natural") for img in dom.images}
    assert set(sizes) == set(FIGURES)
    for name, size in sizes.items():
        width, height = (int(v) for v in size.split("x"))
        assert width > 100 and height > 100, f"{name} rendered as {size}"
    shot = tmp_path / "shot.png"
    args[-2:] = ["--window-size=1200,2000", f"--screenshot={shot}", (out / "report.html").as_uri()]
    subprocess.run(args, capture_output=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_hand_built_funnel_numbers_reach_behavior_json_and_the_page(tmp_path):
    report = write_behavior_report(funnel_log(), tmp_path)
    document = json.loads((tmp_path / "behavior.json").read_text())
    rates = [(c["from"], c["to"], c["rate"]) for c in document["funnel"]["conversions"]]
    assert rates == [("view", "add_to_cart", 0.4), ("add_to_cart", "purchase", 0.25)]
    assert report["absent_funnel_steps"] == ["click"]
    html = (tmp_path / "report.html").read_text()
    assert "40.00%" in html and "25.00%" in html and "absent funnel steps: click" in html
    assert "no history yet" in html and "no history yet" in report["drift_message"]


@pytest.mark.slow
def test_change_against_the_previous_night_and_drift_flag(tmp_path):
    first = write_behavior_report(daily_log(days=8), tmp_path / "night1")
    assert first["change"] == {} and first["drift"] is False
    second = write_behavior_report(daily_log(days=8, shift_last=3), tmp_path / "night2", previous=tmp_path / "night1")
    assert second["previous_note"] is None
    delta = second["change"]["last_day_events"]
    assert delta["previous"] == first["headline"]["last_day_events"]
    assert delta["change"] == second["headline"]["last_day_events"] - first["headline"]["last_day_events"]
    assert delta["relative"] == pytest.approx(2.0)
    assert second["drift"] is True and drift_flagged(second)
    assert drift_flagged(json.loads((tmp_path / "night2" / "behavior.json").read_text()))
    assert "DRIFT" in second["markdown"] and "+200.0%" in second["markdown"]
    assert "events moved +200.0%" in (tmp_path / "night2" / "report.html").read_text()


def test_empty_input_is_a_clear_error(tmp_path):
    import polars as pl

    empty = tmp_path / "events.parquet"
    pl.DataFrame(schema=EVENT_SCHEMA).write_parquet(empty)
    with pytest.raises(InputError, match="no events"):
        write_behavior_report(empty, tmp_path / "out")
    with pytest.raises(InputError, match="empty"):
        write_behavior_report(pl.DataFrame(schema=EVENT_SCHEMA), tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow
@pytest.mark.skipif(not MOVIELENS.exists(), reason=f"{MOVIELENS} is absent; run `make bench-data`")
def test_movielens_report_states_the_missing_funnel_steps(tmp_path):
    report = write_behavior_report(MOVIELENS, tmp_path)
    assert report["absent_funnel_steps"] == ["view", "add_to_cart", "purchase"]
    assert report["headline"]["events"] == 100_000 and report["headline"]["users"] == 943
    assert report["headline"]["overall_conversion"] is None
    assert "absent funnel steps: view, add_to_cart, purchase" in (tmp_path / "report.html").read_text()
    assert "absent funnel steps" in report["markdown"]
    document = json.loads((tmp_path / "behavior.json").read_text())
    assert document["overview"]["session_source"] == "timeout"
    assert document["sessions"]["sessions"] > 943


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(cwd / ".prefect")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.mark.integration
@pytest.mark.slow
def test_cli_analyze_writes_the_report_and_fails_cleanly_on_empty_input(demo_events, tmp_path):
    done = _cli("analyze", "--events", str(demo_events[0]), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "behavior.json").is_file()
    assert "view → click" in done.stdout
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,event_type,timestamp\n")
    failed = _cli("analyze", "--events", str(empty), cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and "no events" in failed.stderr


def test_item_ids_that_look_like_mathtext_are_drawn_as_typed(tmp_path):
    import polars as pl
    from matplotlib.text import Text

    import nightrec.behavior.figures as figures

    hostile = {"i0": r"$\notacommand{x}$", "i1": "$5 and $10", "i2": "a_b^c"}
    events = daily_log(days=3).with_columns(pl.col("item_id").replace(hostile))
    report = write_behavior_report(events, tmp_path)
    assert set(report["figures"]) == set(FIGURES)
    document = json.loads((tmp_path / "behavior.json").read_text())
    assert {r["from_item"] for r in document["transitions"]["top"]} & set(hostile.values())
    seen = []
    real = figures._png

    def spy(fig):
        cells = [c.get_text() for ax in fig.axes for table in ax.tables for c in table.get_celld().values()]
        seen.extend(t for t in [*fig.findobj(Text), *cells] if "$" in t.get_text())
        return real(fig)

    figures._png = spy
    try:
        figures.render_figures(document)
    finally:
        figures._png = real
    assert seen and not any(t.get_parse_math() for t in seen), "no id is parsed as math"
