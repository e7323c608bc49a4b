"""extract_page of two checkouts (BEFORE=path to a trafilatura_page.py, default /work/main's, and this one's), page by page alternately in one process over html-dev: CPU s of each, of furniture() alone, and how many outputs are identical.

    nice -n 10 .venv/bin/python bench/bench_extract_page.py   (N=200 for a subset)
"""
import gzip, importlib.util, os, statistics, sys, time
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m
old, new = load("tp_old", os.environ.get("BEFORE", "/work/main/transforms/trafilatura_page.py")), load("tp_new", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "transforms", "trafilatura_page.py"))
d = "/work/shared/data/html-dev/html"
names = sorted(os.listdir(d))[: int(os.environ.get("N", "990"))]
cpu = {"before": 0.0, "after": 0.0}; furn = {"before": 0.0, "after": 0.0}; same = 0
import lxml.html
for i, n in enumerate(names):
    html = gzip.open(os.path.join(d, n)).read()
    order = [("before", old), ("after", new)] if i % 2 == 0 else [("after", new), ("before", old)]
    res = {}
    for tag, m in order:
        t = time.process_time(); res[tag] = m.extract_page(html, None); cpu[tag] += time.process_time() - t
    same += res["before"] == res["after"]
    if res["after"] and res["after"].get("text"):
        tree = old.trafilatura.load_html(html)
        for tag, m in order:
            t = time.process_time(); m.furniture(tree, res[tag]["text"]); furn[tag] += time.process_time() - t
print(f"pages {len(names)}, identical outputs {same}")
print(f"extract_page CPU s: before {cpu['before']:.1f}  after {cpu['after']:.1f}  ratio {cpu['after']/cpu['before']:.3f}")
print(f"furniture() alone CPU s: before {furn['before']:.1f}  after {furn['after']:.1f}  ratio {furn['after']/furn['before']:.3f}")
