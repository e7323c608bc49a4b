"""`newsbeam report`: one self-contained HTML page of charts over a dataset's statistics.

The charts are Plotly's: plotly.py builds each figure, and plotly.js, which ships inside the
plotly package, is written once into the page, so it opens offline, from a file, with nothing
fetched. Plotly over the alternatives: hovering shows exact numbers and a legend click hides a
topic (matplotlib's SVG is a still picture); Vega-Altair inlines its JavaScript only through
vl-convert, a second native package, where plotly is one pure-Python wheel; and the browser
renders Plotly's charts as SVG, which a test can count.

The numbers all come from `newsbeam.pipelines.stats.dataset_stats`, as `inspect --json` prints them.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from newsbeam.pipelines.stats import dataset_stats, read_manifests

__all__ = ["DEFAULT_FILE", "check_arguments", "time_bins", "render", "write_report"]

DEFAULT_FILE = "report.html"
TOP = 20                # entities, publishers, languages shown by name
HISTORY_RUNS = 60       # runs in the run-history charts, the newest
CHART_HEIGHT = 340
DAY_BINS_UP_TO_DAYS = 92      # longer spans are shown per month,
MONTH_BINS_UP_TO_DAYS = 3660  # and longer still per year
_CONFIG = {"displaylogo": False, "responsive": True}
UNCLASSIFIED_COLOUR = "#b0b0b0"


# --- Pure functions ------------------------------------------------------------------------------


def time_bins(per_day_topic: list[dict]) -> tuple[str, dict[str, dict[str, int]]]:
    """Articles per period and topic: ('day'|'month'|'year', {topic: {period start: n}}). The
    period is the day when the dataset spans at most DAY_BINS_UP_TO_DAYS, else the month, else
    the year, so that the chart stays readable."""
    dates = sorted({row["date"] for row in per_day_topic if _is_date(row["date"])})
    if not dates:
        return "day", {}
    span = (dt.date.fromisoformat(dates[-1]) - dt.date.fromisoformat(dates[0])).days
    unit = "day" if span <= DAY_BINS_UP_TO_DAYS else \
        "month" if span <= MONTH_BINS_UP_TO_DAYS else "year"
    start = {"day": lambda d: d, "month": lambda d: d[:7] + "-01",
             "year": lambda d: d[:4] + "-01-01"}[unit]
    series: dict[str, dict[str, int]] = {}
    for row in per_day_topic:
        if _is_date(row["date"]):
            period = start(row["date"])
            topic = series.setdefault(row["topic"], {})
            topic[period] = topic.get(period, 0) + row["articles"]
    return unit, dict(sorted(series.items(), key=lambda t: -sum(t[1].values())))


def topic_colours(topics) -> dict[str, str]:
    """A colour per topic, the same in every report: the IPTC topics in their fixed order over
    a 24-colour palette (Plotly's default has 10, and 18 topics would repeat), unclassified
    grey."""
    from plotly.colors import qualitative

    from newsbeam.transforms.topics import IPTC_TOPICS, UNCLASSIFIED
    palette = qualitative.Dark24
    known = {topic: palette[i % len(palette)] for i, topic in enumerate(IPTC_TOPICS)}
    known[UNCLASSIFIED] = UNCLASSIFIED_COLOUR
    others = sorted(t for t in topics if t not in known)   # a topic a custom model invented
    known.update({t: palette[(len(IPTC_TOPICS) + i) % len(palette)] for i, t in enumerate(others)})
    return {topic: known[topic] for topic in topics}


def _is_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
        return True
    except (TypeError, ValueError):
        return False


def count_ticks(largest: int, ticks: int = 8) -> dict:
    """Axis settings for counts: whole-number ticks (1, 2 or 5 times a power of ten apart), so
    that a chart of small counts does not read 0.2, 0.4, ..."""
    step = 1
    while largest / step > ticks:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if largest / step <= ticks:
                break
    return {"tick0": 0, "dtick": step, "rangemode": "tozero"}


def _label(text) -> str:
    """A data value as chart text: Plotly reads a few HTML tags in labels, so a title or
    entity from the web is escaped (Plotly shows the entities as the characters)."""
    return html.escape(str(text), quote=False)


# --- Figures -------------------------------------------------------------------------------------


def _layout(fig, **extra):
    fig.update_layout(**{"template": "plotly_white", "height": CHART_HEIGHT,
                         "margin": dict(l=10, r=10, t=10, b=10), "font": dict(size=12),
                         **extra})
    return fig


def _bars(counts: dict, horizontal: bool = False, name: str = "articles",
          colours: dict | None = None):
    import plotly.graph_objects as go
    labels, values = [_label(k) for k in counts], list(counts.values())
    marker = {"marker_color": [colours[k] for k in counts]} if colours else {}
    ticks = count_ticks(max(values, default=1))
    if horizontal:  # most at the top
        bar = go.Bar(y=labels[::-1], x=values[::-1], orientation="h", name=name)
        return _layout(go.Figure(bar), xaxis=ticks, yaxis=dict(automargin=True),
                       height=max(CHART_HEIGHT, 22 * len(labels) + 60))
    return _layout(go.Figure(go.Bar(x=labels, y=values, name=name, **marker)),
                   xaxis=dict(type="category"), yaxis=ticks)


def articles_over_time(stats: dict):
    import plotly.graph_objects as go
    unit, series = time_bins(stats["articles"]["per_day_topic"])
    if not series:
        return unit, None
    period = {"day": None, "month": "M1", "year": "M12"}[unit]
    colours = topic_colours(series)
    fig = go.Figure([go.Bar(x=list(points), y=list(points.values()), name=_label(topic),
                            marker_color=colours[topic], xperiod=period,
                            xperiodalignment="middle" if period else None)
                     for topic, points in series.items()])
    return unit, _layout(fig, barmode="stack", xaxis=dict(type="date"),
                         legend=dict(font=dict(size=11)), height=CHART_HEIGHT + 60)


def _histogram(rows: list[dict], x_title: str, y_title: str):
    import plotly.graph_objects as go
    fig = go.Figure(go.Bar(x=[r["size"] for r in rows], y=[r["count"] for r in rows],
                           name=y_title))
    return _layout(fig, xaxis=dict(title=x_title, dtick=1),
                   yaxis=dict(title=y_title, **count_ticks(max(r["count"] for r in rows))))


def top_entities(entities: list[dict]):
    import plotly.graph_objects as go
    labels = sorted({e["label"] for e in entities})
    fig = go.Figure([go.Bar(
        y=[_label(e["text"]) for e in entities[::-1] if e["label"] == label],
        x=[e["articles"] for e in entities[::-1] if e["label"] == label],
        customdata=[e["mentions"] for e in entities[::-1] if e["label"] == label],
        hovertemplate="%{y}: %{x} articles, %{customdata} mentions",
        orientation="h", name=label) for label in labels])
    order = list(dict.fromkeys(_label(e["text"]) for e in entities[::-1]))
    totals: dict[str, int] = {}
    for e in entities:
        totals[e["text"]] = totals.get(e["text"], 0) + e["articles"]
    return _layout(fig, barmode="stack", height=max(CHART_HEIGHT, 18 * len(order) + 60),
                   xaxis=count_ticks(max(totals.values())),
                   yaxis=dict(categoryorder="array", categoryarray=order, automargin=True))


def errors_by_reason(by_stage: dict):
    import plotly.graph_objects as go
    fig = go.Figure([go.Bar(y=[_label(f"{stage}: {r}") for r in reasons][::-1],
                            x=list(reasons.values())[::-1], orientation="h", name=stage)
                     for stage, reasons in by_stage.items()])
    largest = max(n for reasons in by_stage.values() for n in reasons.values())
    bars = sum(len(reasons) for reasons in by_stage.values())
    return _layout(fig, xaxis=count_ticks(largest), yaxis=dict(automargin=True),
                   height=max(CHART_HEIGHT // 2, 26 * bars + 60))


def run_counts(history: list[dict]):
    import plotly.graph_objects as go
    runs = [_label(r["run_id"]) for r in history]
    fig = go.Figure([go.Bar(x=runs, y=[r[name] for r in history], name=name.replace("_", " "))
                     for name in ("articles", "duplicates", "errors", "already_ingested")])
    largest = max(max(r[name] for name in ("articles", "duplicates", "errors",
                                           "already_ingested")) for r in history)
    return _layout(fig, barmode="group", xaxis=dict(type="category", tickangle=-30),
                   yaxis=count_ticks(largest))


def run_times(history: list[dict]):
    """Seconds per stage for manifests that record them, else each run's elapsed time."""
    import plotly.graph_objects as go
    runs = [_label(r["run_id"]) for r in history]
    stages = sorted({s for r in history for s in r.get("stage_seconds", {})})
    if stages:
        bars = [go.Bar(x=runs, y=[r.get("stage_seconds", {}).get(s, 0) for r in history],
                       name=_label(s)) for s in stages]
        mode = "stack"
    else:
        bars = [go.Bar(x=runs, y=[r["elapsed_s"] for r in history], name="elapsed")]
        mode = "group"
    return _layout(go.Figure(bars), barmode=mode, yaxis=dict(title="seconds"),
                   xaxis=dict(type="category", tickangle=-30))


def sections(stats: dict) -> list[tuple[str, object, str, bool]]:
    """(title, figure or None, what to say when there is nothing to draw, full width), in page
    order: two cards a row, the time series and the run history across."""
    a, d, e, s = (stats[name] for name in ("articles", "duplicates", "errors", "stories"))
    history = stats["runs"]["last"][::-1]  # oldest first
    unit, over_time = articles_over_time(stats)
    languages = dict(list(a["languages"].items())[:TOP])
    return [
        (f"Articles per {unit}, by topic", over_time, "No articles.", True),
        ("Topics", _bars(a["topics"], colours=topic_colours(a["topics"])) if a["topics"]
         else None, "No articles.", False),
        ("Languages", _bars(languages) if languages else None, "No articles.", False),
        ("Date sources (where each article's date came from)",
         _bars(a["date_sources"]) if a["date_sources"] else None, "No articles.", False),
        (f"Top {len(a['publishers'])} publishers", _bars(a["publishers"], horizontal=True)
         if a["publishers"] else None, "No articles.", False),
        ("Copies per kept article (duplicates/)",
         _histogram(d["copies_per_article"], "copies not kept", "articles")
         if a["rows"] else None, "No articles.", False),
        ("Story sizes (articles per story)",
         _histogram(s["sizes"], "articles in the story", "stories") if s["sizes"] else None,
         "No stories.", False),
        (f"Top {len(a['entities'])} entities (articles naming them; colour: entity type)",
         top_entities(a["entities"]) if a["entities"] else None, "No entities.", False),
        ("Wire agencies credited", _bars(a["wire_sources"], horizontal=True)
         if a["wire_sources"] else None, "No article credits a news agency.", False),
        ("Errors by stage and reason", errors_by_reason(e["by_stage"])
         if e["by_stage"] else None, "No errors.", True),
        (f"Runs: what each stored (the last {len(history)})", run_counts(history)
         if history else None, "No runs.", True),
        ("Runs: time" + (" per stage" if any("stage_seconds" in r for r in history) else
                         " (the manifests record no time per stage)"),
         run_times(history) if history else None, "No runs.", True),
    ]


# --- The page ------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px;
       color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 8px; }
.meta { color: #666; margin-bottom: 16px; }
.totals { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 20px; }
.total { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; }
.total b { display: block; font-size: 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr));
        gap: 16px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px; }
.wide { grid-column: 1 / -1; }
.empty { color: #888; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eee; }
"""


def _totals(stats: dict) -> str:
    a, d, e, s = (stats[name] for name in ("articles", "duplicates", "errors", "stories"))
    span = f"{a['first_date']} .. {a['last_date']}" if a["days"] else "-"
    items = [("articles", a["rows"]), ("duplicates", d["rows"]), ("errors", e["rows"]),
             ("stories", s["stories"]), ("of them with several articles",
                                         s["with_several_articles"]),
             ("runs", stats["runs"]["total"]), ("publication dates", span)]
    return "".join(f'<div class="total"><b>{html.escape(str(value))}</b>{html.escape(name)}'
                   "</div>" for name, value in items)


def _stories_table(stories: dict) -> str:
    rows = [s for s in stories["largest"] if s["articles"] > 1]
    if not rows:
        return '<p class="empty">No story has more than one article.</p>'
    body = "".join(
        f"<tr><td>{s['articles']}</td><td>{html.escape(s['title'] or s['story_id'])}</td>"
        f"<td>{html.escape(', '.join(s['publishers'][:6]))}</td>"
        f"<td>{html.escape((s['first_published'] or '')[:10])} .. "
        f"{html.escape((s['last_published'] or '')[:10])}</td></tr>" for s in rows)
    return ("<table><tr><th>articles</th><th>story (its lead's title)</th><th>publishers</th>"
            f"<th>published</th></tr>{body}</table>")


def render(stats: dict, generated_at: dt.datetime) -> str:
    """The report page: plotly.js once in the head, then one card per chart."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs
    cards = []
    for number, (title, figure, empty, wide) in enumerate(sections(stats)):
        if figure is None:
            inner = f'<p class="empty">{html.escape(empty)}</p>'
        else:
            inner = pio.to_html(figure, include_plotlyjs=False, full_html=False,
                                config=_CONFIG, div_id=f"chart-{number}")
        cards.append(f'<section class="card{" wide" if wide else ""}"><h2>'
                     f"{html.escape(title)}</h2>{inner}</section>")
    cards.insert(7, '<section class="card wide"><h2>Largest stories</h2>'
                 f"{_stories_table(stats['stories'])}</section>")
    scope = f"run {stats['run_id']}" if stats["run_id"] else "the whole dataset"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>newsbeam report: {html.escape(stats['output'])}</title>
<style>{_STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>newsbeam report</h1>
<div class="meta">{html.escape(stats['output'])}: {html.escape(scope)}; generated
{html.escape(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</div>
<div class="totals">{_totals(stats)}</div>
<div class="grid">
{''.join(cards)}
</div>
</body></html>
"""


# --- The command ---------------------------------------------------------------------------------


def check_arguments(output: str, run_id: str | None, file: str) -> list[str]:
    """What stops the report from being written as asked, before anything is read."""
    problems = []
    manifests = read_manifests(output)
    if not manifests:
        problems.append(f"no runs under {output} (no {posixpath.join(output, '_runs')}/*.json)")
    elif run_id is not None and run_id not in {m["run_id"] for m in manifests}:
        problems.append(f"no run {run_id} in {output}")
    if FileSystems.get_scheme(file) is None:
        folder = os.path.dirname(os.path.abspath(file))
        if os.path.isdir(file):
            problems.append(f"--file {file} is a folder; name the page, e.g. {DEFAULT_FILE}")
        elif not os.path.isdir(folder):
            problems.append(f"--file {file}: no folder {folder}")
        elif not os.access(folder, os.W_OK):
            problems.append(f"--file {file}: cannot write in {folder}")
    return problems


def write_report(output: str, file: str, run_id: str | None = None) -> dict:
    """Writes the report page of `output` (only `run_id`'s rows if given) to `file`."""
    stats = dataset_stats(output, run_id=run_id, top=TOP, runs=HISTORY_RUNS)
    page = render(stats, dt.datetime.now(dt.timezone.utc)).encode("utf-8")
    with FileSystems.create(file) as stream:
        stream.write(page)
    return {"articles": stats["articles"]["rows"], "runs": stats["runs"]["total"],
            "bytes": len(page)}
