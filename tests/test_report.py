"""`newsbeam report`: one self-contained HTML page over the sample dataset of two real runs;
opened in a real headless Chromium (Playwright driving the system's browser, nothing
downloaded) to see the charts render with no console errors and no request leaving the page."""

from __future__ import annotations

import copy
import html.parser
import json
import shutil
import struct

import pytest

from newsbeam.pipelines import report, stats
from newsbeam.pipelines.cli import main
from tests import dataset

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOSTILE_TITLE = '<img src=x onerror="alert(1)">'
HOSTILE_ENTITY = "</script><script>alert(2)</script>"


@pytest.fixture(scope="module")
def dataset_stats(sample_dataset):
    return stats.dataset_stats(str(sample_dataset), top=report.TOP, runs=report.HISTORY_RUNS)


@pytest.fixture(scope="module")
def page(sample_dataset, tmp_path_factory):
    """The report as `newsbeam report` writes it."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--output", str(sample_dataset), "--file", str(path)]) == 0
    return path


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


def _charts(stats_: dict) -> list[str]:
    return [title for title, figure, _, _ in report.sections(stats_) if figure is not None]


def test_the_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    tags = _tags(text)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts and not [s for s in scripts if "src" in s]
    linked = [(tag, attrs) for tag, attrs in tags for name in ("src", "href", "data")
              if name in attrs]
    assert linked == []  # no stylesheet, image, script or frame fetched from anywhere
    # plotly.js itself is in the page, once.
    assert text.count("plotly.js v") >= 1 and text.count("<script>/**") == 1
    assert 1 * 2**20 < page.stat().st_size < 12 * 2**20


def test_one_chart_per_breakdown(page, dataset_stats):
    text = page.read_text(encoding="utf-8")
    titles = _charts(dataset_stats)
    # Every breakdown of the sample dataset has something to draw.
    assert len(titles) == len(report.sections(dataset_stats)) == 12
    assert sum(1 for tag, attrs in _tags(text)
               if tag == "div" and attrs.get("id", "").startswith("chart-")) == len(titles)
    for title in ("Articles per day, by topic", "Languages", "Date sources",
                  "Copies per kept article", "Story sizes", "entities", "Wire agencies",
                  "Errors by stage and reason", "Runs: what each stored", "Runs: time"):
        assert any(title in t for t in titles), title
    a = dataset_stats["articles"]
    assert f"<b>{a['rows']}</b>articles" in text
    assert f"<b>{a['first_date']} .. {a['last_date']}</b>publication dates" in text
    largest = dataset_stats["stories"]["largest"][0]
    assert f"<td>{largest['articles']}</td>" in text


def test_one_runs_report(sample_dataset, tmp_path, capsys):
    path = tmp_path / "second.html"
    assert main(["report", "--output", str(sample_dataset), "--run_id", dataset.SECOND_RUN,
                 "--file", str(path)]) == 0
    assert capsys.readouterr().out.startswith(
        f"newsbeam report: 6 articles, 2 runs -> {path} (")
    text = path.read_text(encoding="utf-8")
    assert f"run {dataset.SECOND_RUN}" in text and "<b>6</b>articles" in text
    assert "<b>0</b>errors" in text and "No errors." in text


def test_default_file_is_report_html_here(sample_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--output", str(sample_dataset)]) == 0
    assert (tmp_path / report.DEFAULT_FILE).stat().st_size > 2**20


@pytest.mark.parametrize("case", ["no runs", "unknown run", "no folder", "a folder"])
def test_what_it_cannot_honour_is_refused_before_writing(case, sample_dataset, tmp_path, capsys):
    output, run_id, file = str(sample_dataset), None, tmp_path / "r.html"
    if case == "no runs":
        output = str(tmp_path / "empty")
    elif case == "unknown run":
        run_id = "20990101-never"
    elif case == "no folder":
        file = tmp_path / "missing" / "r.html"
    else:
        file = tmp_path
    argv = ["report", "--output", output, "--file", str(file)] + (
        ["--run_id", run_id] if run_id else [])
    assert main(argv) == 2
    said = capsys.readouterr().err
    assert said.startswith("newsbeam report: ") and {
        "no runs": "no runs under", "unknown run": "no run 20990101-never",
        "no folder": "no folder", "a folder": "is a folder"}[case] in said
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "missing").exists()


def _hostile(stats_: dict) -> dict:
    """The sample's statistics with a story title and an entity that try to run script."""
    hostile = copy.deepcopy(stats_)
    hostile["stories"]["largest"][0]["title"] = HOSTILE_TITLE
    hostile["articles"]["entities"][0]["text"] = HOSTILE_ENTITY
    hostile["articles"]["publishers"] = {HOSTILE_TITLE: 3, **hostile["articles"]["publishers"]}
    return hostile


def test_data_cannot_inject_markup(dataset_stats):
    import datetime as dt
    text = report.render(_hostile(dataset_stats), dt.datetime(2026, 12, 1))
    assert HOSTILE_TITLE not in text and HOSTILE_ENTITY not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text   # the stories table
    assert not [attrs for tag, attrs in _tags(text) if tag == "img"]


def test_time_bins_keep_the_chart_readable():
    rows = lambda *dates: [{"date": d, "topic": "sport", "articles": 1} for d in dates]
    assert report.time_bins(rows("2026-11-01", "2026-11-30", "2026-11-30")) == (
        "day", {"sport": {"2026-11-01": 1, "2026-11-30": 2}})
    assert report.time_bins(rows("2025-01-03", "2026-11-30", "2026-11-02")) == (
        "month", {"sport": {"2025-01-01": 1, "2026-11-01": 2}})
    assert report.time_bins(rows("1996-05-01", "2026-11-30")) == (
        "year", {"sport": {"1996-01-01": 1, "2026-01-01": 1}})
    assert report.time_bins([]) == ("day", {})


def test_each_topic_keeps_its_colour():
    some = report.topic_colours(["sport", "unclassified", "politics"])
    assert some["unclassified"] == report.UNCLASSIFIED_COLOUR
    assert some["sport"] == report.topic_colours(["sport"])["sport"] != some["politics"]
    from newsbeam.transforms.topics import IPTC_TOPICS
    every = report.topic_colours(list(IPTC_TOPICS))
    assert len(set(every.values())) == len(IPTC_TOPICS)


def test_count_axes_have_whole_number_ticks():
    assert [report.count_ticks(n)["dtick"] for n in (1, 3, 8, 9, 17, 40, 100, 2600)] == [
        1, 1, 1, 2, 5, 5, 20, 500]


def test_time_per_stage_when_the_manifest_has_it():
    history = [{"run_id": "a", "elapsed_s": 9.0, "stage_seconds": {"extract": 5.0, "write": 2.0}},
               {"run_id": "b", "elapsed_s": 4.0, "stage_seconds": {"extract": 1.5}}]
    figure = report.run_times(history)
    assert [(t.name, list(t.y)) for t in figure.data] == [("extract", [5.0, 1.5]),
                                                          ("write", [2.0, 0])]
    assert figure.layout.barmode == "stack"
    plain = report.run_times([{"run_id": "a", "elapsed_s": 9.0}])
    assert [(t.name, list(t.y)) for t in plain.data] == [("elapsed", [9.0])]


# --- In a real browser ---------------------------------------------------------------------------


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no browser on PATH (looked for {', '.join(BROWSERS)}); "
                "apt-get install chromium")


def _open_in_browser(path, screenshot):
    """Opens the page offline in headless Chromium; returns what the page showed and said."""
    executable = _browser()
    sync_api = pytest.importorskip("playwright.sync_api")
    seen = {"console": [], "requests": [], "dialogs": []}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: seen["console"].append((m.type, m.text)))
            page.on("pageerror", lambda e: seen["console"].append(("pageerror", str(e))))
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            seen["charts"] = page.evaluate("""() => [...document.querySelectorAll(
                '.js-plotly-plot')].map(chart => ({
                    id: chart.id,
                    svgs: chart.querySelectorAll('svg.main-svg').length,
                    bars: [...chart.querySelectorAll('g.point path')].filter(
                        bar => bar.getBBox().width > 0 && bar.getBBox().height > 0).length}))""")
            seen["png"] = page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_the_report_renders_in_a_browser(page, dataset_stats, tmp_path):
    seen = _open_in_browser(page, tmp_path / "report.png")

    assert [m for m in seen["console"] if m[0] in ("error", "pageerror", "warning")] == []
    assert [url for url in seen["requests"] if not url.startswith("file:")] == []
    charts = seen["charts"]
    assert len(charts) == len(_charts(dataset_stats))
    assert all(chart["svgs"] >= 1 and chart["bars"] >= 1 for chart in charts), charts
    # The articles-per-day chart draws one bar per (day, topic) of the dataset.
    over_time = next(chart for chart in charts if chart["id"] == "chart-0")
    assert over_time["bars"] == len(dataset_stats["articles"]["per_day_topic"])
    width, height = _png_size(seen["png"])
    assert width == 1280 and height > 2000
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_hostile_data_runs_no_script_in_the_browser(dataset_stats, tmp_path):
    import datetime as dt
    path = tmp_path / "hostile.html"
    path.write_text(report.render(_hostile(dataset_stats), dt.datetime(2026, 12, 1)),
                    encoding="utf-8")
    seen = _open_in_browser(path, tmp_path / "hostile.png")
    assert seen["dialogs"] == []
    assert [m for m in seen["console"] if m[0] in ("error", "pageerror")] == []


def test_stats_are_json(dataset_stats):
    assert json.loads(json.dumps(dataset_stats)) == dataset_stats
