"""Unit tests for transforms/timelimit.py: a function called in a killable child process.

The child is spawned (a fresh interpreter), so the function it runs must be importable by name:
the helpers live in tests/helpers_timelimit.py. Each worker costs a spawn, so the tests share
one dispatching helper and keep every sleep short.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import helpers_timelimit as helpers
from tests.conftest import FIXTURES, ROOT, read_dataset
from newsbeam.transforms.timelimit import ChildFailed, TimeLimitedWorker, TimeLimitExceeded

LIMIT_S = 1.0


@pytest.fixture
def worker():
    # helpers.dispatch("name", *args) runs helpers.name(*args) in the child.
    with TimeLimitedWorker(helpers.dispatch, LIMIT_S) as w:
        yield w


def child_pid(worker: TimeLimitedWorker) -> int:
    return worker.call("pid")


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_returns_results_of_a_plain_function():
    with TimeLimitedWorker(helpers.add, LIMIT_S) as worker:
        assert worker.call(2, 3) == 5
        assert worker.call("news", "beam") == "newsbeam"
        assert worker.restarts == 0


def test_returns_results(worker):
    assert worker.call("sleep_then_return", 0.05, {"title": "x", "n": [1, 2]}) == \
        {"title": "x", "n": [1, 2]}
    assert worker.call("add", 2, 3) == 5
    assert worker.restarts == 0


def test_one_child_serves_many_calls(worker):
    first = child_pid(worker)
    assert first != os.getpid()
    assert all(child_pid(worker) == first for _ in range(5))


def test_overrun_raises_fast_and_next_call_gets_fresh_child(worker):
    before = child_pid(worker)
    start = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        worker.call("sleep_then_return", 30, "never")
    elapsed = time.monotonic() - start
    assert LIMIT_S * 0.9 <= elapsed < LIMIT_S + 3   # the limit, not the 30 s sleep
    assert worker.restarts == 1
    assert not is_running(before)                  # the stuck child was killed
    # The next call works, in a new child.
    assert worker.call("add", 1, 1) == 2
    assert child_pid(worker) != before


def test_exception_reraised_in_parent_and_child_survives(worker):
    before = child_pid(worker)
    with pytest.raises(helpers.HelperError, match="bad page"):
        worker.call("fail", "bad page")
    assert worker.call("add", 40, 2) == 42
    assert child_pid(worker) == before
    assert worker.restarts == 0


def test_child_death_raises_child_failed_then_recovers(worker):
    before = child_pid(worker)
    start = time.monotonic()
    with pytest.raises(ChildFailed):
        worker.call("die", 3)
    assert time.monotonic() - start < LIMIT_S   # noticed at once, not after the limit
    assert worker.restarts == 1
    assert worker.call("add", 1, 2) == 3
    assert child_pid(worker) != before


def test_a_child_that_cannot_import_its_function_says_so_at_once():
    def orphan():
        return None

    orphan.__module__ = "tests.no_such_module"   # the child's import of it fails
    worker = TimeLimitedWorker(orphan, LIMIT_S)
    start = time.monotonic()
    with pytest.raises(ChildFailed, match="exited with code 1 before it was ready"):
        worker.call()
    assert time.monotonic() - start < 60        # not the 120 s start-up limit
    worker.close()


def test_close_stops_the_child():
    worker = TimeLimitedWorker(helpers.dispatch, LIMIT_S)
    pid = child_pid(worker)
    worker.close()
    assert not is_running(pid)
    worker.close()   # a second close is harmless


# --- Isolation from the current directory --------------------------------------------------------

# Modules the child imports (its bootstrap, trafilatura's dependencies): a stray copy of any of
# them in the folder newsbeam runs from must not be imported.
STRAY_MODULES = ("htmldate", "courlan", "concurrent", "json", "socket", "justext")


def write_stray_modules(folder: Path) -> None:
    """Each stray module leaves a marker file and raises, as a broken local file would."""
    for name in STRAY_MODULES:
        (folder / f"{name}.py").write_text(
            "import pathlib\n"
            "pathlib.Path(__file__).with_suffix('.imported').touch()\n"
            f"raise ImportError('the stray {name}.py in the working directory was imported')\n")


def test_the_child_never_imports_from_the_current_directory(tmp_path, monkeypatch):
    write_stray_modules(tmp_path)
    monkeypatch.chdir(tmp_path)
    with TimeLimitedWorker(helpers.dispatch, 60) as worker:
        found = worker.call("module_files", ["htmldate", "courlan", "concurrent.futures", "json",
                                             "justext"])
        child_path = worker.call("sys_path")
    assert all(file.startswith("/") and not file.startswith(str(tmp_path))
               for file in found.values()), found
    assert not list(tmp_path.glob("*.imported"))
    assert "" not in child_path and str(tmp_path) not in child_path


@pytest.mark.parametrize("workers", [
    [], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]],
    ids=["one-process", "two-worker-processes"])
def test_a_run_from_a_folder_of_stray_modules_extracts_with_the_real_ones(tmp_path, workers):
    """The installed `newsbeam` command run where a user keeps files named like trafilatura's
    dependencies: the extraction child, and Beam's worker processes (started as `python -m`),
    must import the real ones."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_stray_modules(workdir)
    shutil.copy(FIXTURES / "sport-article.html", workdir / "page.html")
    newsbeam = Path(sys.executable).parent / "newsbeam"
    done = subprocess.run([str(newsbeam), "run", "--input", "page.html", "--output", "out",
                           *workers], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(workdir.glob("*.imported"))
    assert read_dataset(workdir / "out" / "articles").num_rows == 1


def test_the_child_finds_newsbeam_installed_normally(tmp_path):
    """newsbeam installed as a plain wheel (no editable-install hook) in another environment,
    used from a script: the child imports newsbeam's modules from that install."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("pipelines", "transforms", "schemas", "seeds"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=120)
    (site_packages,) = env_dir.glob("lib/python*/site-packages")
    # The dependencies come from this environment's site-packages, as a plain path: its .pth
    # files (the editable install's hook among them) are not run there.
    (site_packages / "dependencies.pth").write_text(
        next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site_packages),
                    str(source)], check=True, timeout=300, capture_output=True)
    script = tmp_path / "script" / "extract_one.py"
    script.parent.mkdir()
    script.write_text(
        "import sys\n"
        "from newsbeam.transforms.timelimit import TimeLimitedWorker\n"
        "from newsbeam.transforms.trafilatura_page import extract_page\n"
        "with TimeLimitedWorker(extract_page, 60) as worker:\n"
        "    page = worker.call(open(sys.argv[1], 'rb').read(), None)\n"
        "import newsbeam.transforms\n"
        "print(newsbeam.transforms.__file__)\n"
        "print(page['title'])\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_stray_modules(workdir)
    done = subprocess.run([str(env_dir / "bin" / "python"), str(script),
                           str(FIXTURES / "sport-article.html")],
                          cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    module_file, title = done.stdout.splitlines()[-2:]
    assert module_file.startswith(str(site_packages))
    assert title
    assert not list(workdir.glob("*.imported"))
