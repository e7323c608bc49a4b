"""Unit tests for the pure functions of transforms/sources.py."""

import pytest

from newsbeam.schemas.records import Document
from newsbeam.transforms.sources import (InvalidRecord, document_from_record, expand_input, file_kind,
                                         is_hidden, looks_binary)

# --- file_kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("seeds/000.txt", ("text", False)),
    ("a.text", ("text", False)),
    ("notes.md", ("markdown", False)),
    ("notes.markdown", ("markdown", False)),
    ("page.html", ("html", False)),
    ("page.htm", ("html", False)),
    ("page.xhtml", ("html", False)),
    ("feed.jsonl", ("jsonl", False)),
    ("feed.ndjson", ("jsonl", False)),
    # A trailing .gz is looked through.
    ("page.html.gz", ("html", True)),
    ("gs://bucket/dump/feed.jsonl.gz", ("jsonl", True)),
    ("story.txt.gz", ("text", True)),
    # Upper case.
    ("STORY.TXT", ("text", False)),
    ("Page.HTML", ("html", False)),
    ("FEED.JSONL.GZ", ("jsonl", True)),
    ("notes.Markdown", ("markdown", False)),
])
def test_file_kind(path, expected):
    assert file_kind(path) == expected


@pytest.mark.parametrize("path, gzipped", [
    ("report.pdf", False),
    ("image.png", False),
    ("archive.tar.gz", True),
    ("plain.gz", True),
    ("README", False),
    ("folder.txt/file", False),   # the folder's extension does not count
    (".txt", False),              # a dot-file named '.txt' has no extension
])
def test_file_kind_unsupported(path, gzipped):
    assert file_kind(path) == (None, gzipped)


# --- looks_binary --------------------------------------------------------------------------------

PNG_HEADER = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06"
              b"\x00\x00\x00\x1f\xf3\xffa")


def test_png_is_binary():
    assert looks_binary(PNG_HEADER)
    assert looks_binary(PNG_HEADER + b"\x00" * 100)


def test_control_characters_without_nul_are_binary():
    assert looks_binary(bytes(range(1, 32)) * 10)


@pytest.mark.parametrize("data", [
    "Plain ASCII news text.\nSecond line.\r\n".encode("ascii"),
    "Café “quotes” — Zürich, 東京, Київ\n".encode("utf-8"),
    "\ufeffUTF-8 with a BOM\n".encode("utf-8"),
    "Tabs\tand\fform feeds are text\n".encode("ascii"),
    "UTF-16 text with a BOM: Zürich\n".encode("utf-16"),            # little-endian BOM
    b"\xfe\xff" + "Big-endian UTF-16\n".encode("utf-16-be"),
    "Latin-1 caf\u00e9\n".encode("latin-1"),
])
def test_text_is_not_binary(data):
    assert not looks_binary(data)


def test_only_the_head_is_sniffed():
    # A NUL far past the sniffed head does not make a text file binary.
    assert not looks_binary(b"a" * 100_000 + b"\x00")


# --- is_hidden -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    ".DS_Store", "seeds/.hidden.txt", ".git/config", "a/.cache/b/c.txt", "a\\.svn\\entries",
    "/data/input/.~lock.story.txt#",
])
def test_hidden(path):
    assert is_hidden(path)


@pytest.mark.parametrize("path", [
    "seeds/000.txt", "./seeds/000.txt", "../seeds/000.txt", "/abs/path/story.html",
    "name.with.dots.txt", "a/b.c/d.txt",
])
def test_not_hidden(path):
    assert not is_hidden(path)


# --- document_from_record ------------------------------------------------------------------------


def test_record_with_text():
    doc = document_from_record({"text": "Body of the story.", "url": "https://x.com/a",
                                "title": " A title ", "published_at": "2022-02-16"}, "f.jsonl#L1")
    assert isinstance(doc, Document)
    assert doc.kind == "text"
    assert doc.content == "Body of the story."
    assert doc.source_uri == "f.jsonl#L1"
    assert doc.url == "https://x.com/a"
    assert doc.title == "A title"
    assert doc.published_at == "2022-02-16"


def test_record_with_html():
    doc = document_from_record({"html": "<p>Body</p>"}, "u")
    assert doc.kind == "html" and doc.content == "<p>Body</p>"


def test_html_wins_over_text():
    doc = document_from_record({"html": "<p>Body</p>", "text": "Body"}, "u")
    assert doc.kind == "html" and doc.content == "<p>Body</p>"


def test_blank_html_falls_back_to_text():
    doc = document_from_record({"html": "   ", "text": "Body"}, "u")
    assert doc.kind == "text" and doc.content == "Body"


@pytest.mark.parametrize("record", [
    {},
    {"title": "Only a title", "url": "https://x.com/a"},
    {"text": ""},
    {"text": "   \n"},
    {"text": None, "html": None},
    {"text": 42},
    {"html": ["<p>x</p>"]},
])
def test_record_without_text_or_html_is_invalid(record):
    with pytest.raises(InvalidRecord):
        document_from_record(record, "u")


@pytest.mark.parametrize("record", [["text", "x"], "a string", 42, 4.2, None, True])
def test_non_object_record_is_invalid(record):
    with pytest.raises(InvalidRecord):
        document_from_record(record, "u")


def test_invalid_record_is_a_value_error():
    # Callers that catch ValueError still catch it.
    assert issubclass(InvalidRecord, ValueError)


@pytest.mark.parametrize("value, expected", [(123, "123"), ("abc-1", "abc-1"), (0, "0"),
                                             (" 7 ", "7"), (None, None)])
def test_id_kept_as_source_id_string(value, expected):
    assert document_from_record({"text": "Body", "id": value}, "u").source_id == expected


def test_unknown_keys_ignored():
    doc = document_from_record({"text": "Body", "sentiment": 0.3, "nested": {"a": 1},
                                "kind": "markdown", "content": "other"}, "u")
    assert doc.kind == "text" and doc.content == "Body"
    assert not hasattr(doc, "sentiment")


@pytest.mark.parametrize("categories, expected", [
    ("Politics", ["Politics"]),
    ("World, Politics", ["World", "Politics"]),
    (" World ,, Politics ,", ["World", "Politics"]),
    (["World", "Politics"], ["World", "Politics"]),
    (["World", " ", None, "Sport "], ["World", "Sport"]),
    ("", []),
    ([], []),
])
def test_categories_string_or_list(categories, expected):
    assert document_from_record({"text": "Body", "categories": categories}, "u").categories \
        == expected


@pytest.mark.parametrize("key", ["category", "section", "tags"])
def test_category_aliases(key):
    assert document_from_record({"text": "Body", key: "Sport"}, "u").categories == ["Sport"]


def test_field_aliases():
    doc = document_from_record({"text": "Body", "author": "A. Writer", "source": "Wire",
                                "date": "2022-02-16", "language": "en",
                                "description": "Summary"}, "u")
    assert doc.authors == ["A. Writer"]
    assert doc.publisher == "Wire"
    assert doc.published_at == "2022-02-16"
    assert doc.language == "en"
    assert doc.description == "Summary"


def test_missing_optional_fields_are_empty():
    doc = document_from_record({"text": "Body"}, "u")
    assert (doc.url, doc.title, doc.publisher, doc.published_at, doc.source_id) == \
        (None, None, None, None, None)
    assert doc.authors == [] and doc.categories == []


# --- expand_input --------------------------------------------------------------------------------


def test_folder_becomes_recursive_glob(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    assert expand_input(str(folder)) == f"{folder}/**"
    assert expand_input(f"{folder}/") == f"{folder}/**"


def test_file_and_glob_unchanged(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("x")
    assert expand_input(str(story)) == str(story)
    assert expand_input(f"{tmp_path}/*.txt") == f"{tmp_path}/*.txt"
    assert expand_input("gs://bucket/feeds/*.jsonl") == "gs://bucket/feeds/*.jsonl"
