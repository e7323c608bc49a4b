"""Unit tests for the pure functions of transforms/sinks.py: partition paths and the manifest."""

import datetime as dt
import random
import re

import pytest

from newsbeam.transforms.sinks import (WrittenFile, build_manifest, date_value, manifest_path,
                                       part_file_name, partition_path, partition_value)

HOSTILE = [
    "../../etc", "../..", "/abs", "/", "//", "", " ", ".", "..", "...", ".hidden", "-", "-.-",
    "..a", "a..", "a/b", "a\\b", "C:\\Windows", "~root", "\x00", "\n", "a\x00b", "%2e%2e",
    "%2F", "Politics/../../etc", "topic=politics", "über-straße", "日本語", "İstanbul",
    "\u202e\u0644\u0639\u0631\u0628\u064a\u0629", "🔥🔥", "\uff0e\uff0e", "ａ／ｂ",
    "x" * 500, "." * 500, "/" * 500, "a" * 63 + "." + "b" * 10, "a" * 64 + "/../x",
    "." * 70 + "a", None, 123, -1.5,
]
SAFE = re.compile(r"^[a-z0-9._-]{1,64}$")


def assert_safe_segment(result):
    assert isinstance(result, str)
    assert result not in ("", ".", "..")
    assert "/" not in result and "\\" not in result
    assert not result.startswith(".")
    assert SAFE.match(result), result


# --- partition_value -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:30])
def test_partition_value_is_one_safe_segment(value):
    assert_safe_segment(partition_value(value))


def test_partition_value_random_strings_of_dots_and_slashes():
    rng = random.Random(1234)
    alphabet = "./\\-_ aZ0\u00e9\u2028\x00\uff0e"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        assert_safe_segment(partition_value(value))


@pytest.mark.parametrize("value, expected", [
    ("politics", "politics"),
    ("Politics", "politics"),
    ("economy-business-finance", "economy-business-finance"),
    ("2022-02-16", "2022-02-16"),
    ("Arts & Culture", "arts-culture"),
    ("run_20220216.1", "run_20220216.1"),
])
def test_partition_value_keeps_safe_values_readable(value, expected):
    assert partition_value(value) == expected


@pytest.mark.parametrize("value", ["", ".", "..", "...", "/", "-", "日本語"])
def test_partition_value_never_empty(value):
    assert partition_value(value) == "unknown"


def test_partition_value_length_capped():
    assert len(partition_value("x" * 500)) == 64
    assert partition_value("x" * 500) == "x" * 64


def test_partition_value_traversal_stays_one_segment():
    assert partition_value("../../etc") == "etc"
    assert partition_value("/abs") == "abs"


def test_partition_value_is_idempotent():
    for value in HOSTILE:
        once = partition_value(value)
        assert partition_value(once) == once


# --- partition_path ------------------------------------------------------------------------------


def test_partition_path():
    keys = (("date", "2022-02-16"), ("topic", "politics"))
    assert partition_path(keys) == "date=2022-02-16/topic=politics"


def test_partition_path_empty():
    assert partition_path(()) == ""


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:30])
def test_partition_path_has_one_segment_per_key(value):
    path = partition_path((("date", "2022-02-16"), ("topic", value)))
    segments = path.split("/")
    assert len(segments) == 2
    assert segments[0] == "date=2022-02-16"
    name, _, sanitised = segments[1].partition("=")
    assert name == "topic"
    assert sanitised == partition_value(value)
    assert ".." not in segments


# --- date_value ----------------------------------------------------------------------------------


def test_date_value_utc():
    assert date_value(dt.datetime(2022, 2, 16, 23, 59, tzinfo=dt.timezone.utc)) == "2022-02-16"


def test_date_value_converts_behind_utc_to_next_day():
    new_york = dt.timezone(dt.timedelta(hours=-5))
    # 23:30 in New York on the 16th is 04:30 UTC on the 17th.
    assert date_value(dt.datetime(2022, 2, 16, 23, 30, tzinfo=new_york)) == "2022-02-17"


def test_date_value_converts_ahead_of_utc_to_previous_day():
    tokyo = dt.timezone(dt.timedelta(hours=9))
    # 05:00 in Tokyo on the 17th is 20:00 UTC on the 16th.
    assert date_value(dt.datetime(2022, 2, 17, 5, 0, tzinfo=tokyo)) == "2022-02-16"


def test_date_value_naive_is_taken_as_is():
    assert date_value(dt.datetime(2022, 2, 16, 23, 30)) == "2022-02-16"


def test_date_value_zero_padded():
    assert date_value(dt.datetime(2022, 1, 5, tzinfo=dt.timezone.utc)) == "2022-01-05"


# --- file names ----------------------------------------------------------------------------------


def test_part_file_name_and_manifest_path_are_sanitised():
    assert part_file_name("20220216T1000-ab12", 3) == "part-20220216t1000-ab12-00003.parquet"
    assert "/" not in part_file_name("../../x", 0)
    assert manifest_path("out", "../../evil") == "out/_runs/evil.json"


# --- build_manifest ------------------------------------------------------------------------------

STARTED = dt.datetime(2022, 2, 16, 10, 0, tzinfo=dt.timezone.utc)
FINISHED = STARTED + dt.timedelta(seconds=90.5)
RUN = {"run_id": "run-1", "started_at": STARTED.isoformat(), "options": {"input": ["seeds"]}}


def written_files(articles: int, duplicates: int, errors: int) -> list:
    files = [
        WrittenFile("articles", "date=2022-02-16/topic=politics",
                    "out/articles/date=2022-02-16/topic=politics/part-run-1-00000.parquet",
                    articles - articles // 2),
        WrittenFile("articles", "date=2022-02-16/topic=sport",
                    "out/articles/date=2022-02-16/topic=sport/part-run-1-00000.parquet",
                    articles // 2),
        WrittenFile("duplicates", "date=2022-02-16",
                    "out/duplicates/date=2022-02-16/part-run-1-00000.parquet", duplicates),
        WrittenFile("index/articles", "", "out/index/articles/part-run-1-00000.parquet",
                    articles),
    ]
    if errors:
        files.append(WrittenFile("errors", "date=2022-02-16",
                                 "out/errors/date=2022-02-16/part-run-1-00000.parquet", errors))
    return files


def counts(inputs, errors, already_ingested, errors_new=None):
    # inputs = documents read + files that failed before they became documents (one here).
    # errors_new: errors met for the first time (the others already have a row from an earlier
    # run); all of them unless said otherwise.
    read_errors = min(1, inputs)
    return {"documents": inputs - read_errors, "read_errors": read_errors, "errors": errors,
            "already_ingested": already_ingested,
            "errors_new": errors if errors_new is None else errors_new}


def test_manifest_balanced():
    manifest = build_manifest(RUN, counts(inputs=20, errors=3, already_ingested=2),
                              [(("read", "binary_content"), 1), (("extract", "empty_extraction"), 2)],
                              written_files(articles=10, duplicates=5, errors=3), FINISHED)
    accounting = manifest["accounting"]
    # 20 inputs == 10 articles + 5 duplicates + 3 errors + 2 already ingested.
    assert {key: accounting[key] for key in ("inputs", "articles", "duplicates", "errors",
                                             "already_ingested")} == \
        {"inputs": 20, "articles": 10, "duplicates": 5, "errors": 3, "already_ingested": 2}
    assert accounting["balanced"] is True


@pytest.mark.parametrize("inputs", [19, 21, 0])
def test_manifest_unbalanced_when_inputs_differ(inputs):
    manifest = build_manifest(RUN, counts(inputs=inputs, errors=3, already_ingested=2), [],
                              written_files(articles=10, duplicates=5, errors=3), FINISHED)
    assert manifest["accounting"]["balanced"] is False


def test_manifest_unbalanced_when_error_rows_were_not_all_written():
    # Counted 3 errors, but the errors dataset only holds 2 rows: one was lost.
    files = written_files(articles=10, duplicates=5, errors=2)
    manifest = build_manifest(RUN, counts(inputs=20, errors=3, already_ingested=2), [], files,
                              FINISHED)
    assert manifest["accounting"]["balanced"] is False


def test_manifest_errors_recorded_by_an_earlier_run_have_no_new_row():
    # 3 errors, 2 of which an earlier run already wrote: only 1 new row in errors/.
    files = written_files(articles=10, duplicates=5, errors=1)
    manifest = build_manifest(RUN, counts(inputs=20, errors=3, already_ingested=2,
                                          errors_new=1), [], files, FINISHED)
    assert manifest["accounting"]["balanced"] is True
    assert manifest["accounting"]["errors"] == 3


def test_manifest_counts_are_kept():
    given = counts(inputs=20, errors=3, already_ingested=2)
    manifest = build_manifest(RUN, dict(given), [],
                              written_files(articles=10, duplicates=5, errors=3), FINISHED)
    assert manifest["counts"] == {**given, "inputs": 20}


def test_manifest_index_rows_are_not_counted_as_articles():
    manifest = build_manifest(RUN, counts(inputs=15, errors=0, already_ingested=0), [],
                              written_files(articles=10, duplicates=5, errors=0), FINISHED)
    assert manifest["accounting"]["articles"] == 10
    assert manifest["accounting"]["balanced"] is True


def test_manifest_nothing_written():
    manifest = build_manifest(RUN, counts(inputs=0, errors=0, already_ingested=0), [], [],
                              FINISHED)
    assert manifest["accounting"]["balanced"] is True
    assert manifest["datasets"] == {}
    manifest = build_manifest(RUN, counts(inputs=4, errors=0, already_ingested=0), [], [],
                              FINISHED)
    assert manifest["accounting"]["balanced"] is False


def test_manifest_datasets_errors_and_timing():
    manifest = build_manifest(RUN, counts(inputs=20, errors=3, already_ingested=2),
                              [(("read", "binary_content"), 1), (("extract", "empty_extraction"), 2)],
                              written_files(articles=10, duplicates=5, errors=3), FINISHED)
    assert manifest["run_id"] == "run-1"
    assert manifest["options"] == {"input": ["seeds"]}
    assert manifest["finished_at"] == FINISHED.isoformat()
    assert manifest["elapsed_s"] == 90.5
    assert manifest["errors_by_stage"] == {"read": {"binary_content": 1},
                                           "extract": {"empty_extraction": 2}}
    articles = manifest["datasets"]["articles"]
    assert articles["rows"] == 10 and articles["files"] == 2
    assert articles["partitions"] == {
        "date=2022-02-16/topic=politics": {"rows": 5, "files": 1},
        "date=2022-02-16/topic=sport": {"rows": 5, "files": 1},
    }
    # An unpartitioned dataset is listed under '.'.
    assert manifest["datasets"]["index/articles"]["partitions"] == {".": {"rows": 10, "files": 1}}
