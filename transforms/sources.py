"""Local and cloud-storage inputs: paths, folders and globs become Documents.

A file's kind comes from its extension (a trailing .gz is looked through):
  .txt .text         plain text         -> one Document
  .md .markdown      Markdown text      -> one Document (a leading '# Title' is the title)
  .html .htm .xhtml  a saved page       -> one Document
  .jsonl .ndjson     one article a line -> one Document per non-blank line
  .warc (.warc.gz)   a web archive      -> one Document per HTML response record
                                            (transforms/warc.py; other records are SKIPPED)
Anything else, and any file that is too large, empty or binary, becomes an errors/ row. Folders
are read recursively; names starting with '.' are skipped (editor, OS and temp files).
Every path is read through Beam's FileSystems, so gs:// and other registered schemes work too.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import zlib

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.records import Document
from transforms import errors
from transforms.errors import ERRORS, error_row
from transforms.text import valid_unicode
from transforms.warc import SKIPPED, is_warc, read_warc

TEXT_EXTENSIONS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
HTML_EXTENSIONS = {".html": "html", ".htm": "html", ".xhtml": "html"}
JSONL_EXTENSIONS = {".jsonl", ".ndjson"}

# How much of a file is sniffed for NUL bytes and control characters.
_SNIFF_BYTES = 8192
# Bytes that text holds: all but the C0 controls, save tab, newline, form feed and return.
_TEXT_BYTES = bytes(range(32, 256)) + b"\t\n\f\r"


# --- Pure functions ------------------------------------------------------------------------------


def has_wildcard(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def is_local(path: str) -> bool:
    """True for a path on this machine's disk, False for a URL such as gs://bucket/x."""
    return FileSystems.get_scheme(path) is None


def expand_input(path: str) -> str:
    """The glob that reads `path`: local paths made absolute (so a file has one source_uri
    however it was named), a folder becomes '<folder>/**', a file or glob stays."""
    if is_local(path):
        path = os.path.abspath(os.path.expanduser(path))
        if not has_wildcard(path) and os.path.isdir(path):
            return path + "/**"
    if path.endswith("/"):
        return path + "**"
    return path


def is_hidden(path: str) -> bool:
    """True for a dot-file, or a file inside a dot-folder."""
    return any(part.startswith(".") and part not in (".", "..")
               for part in path.replace("\\", "/").split("/"))


def file_kind(path: str) -> tuple[str | None, bool]:
    """(kind, gzipped): kind is 'text', 'markdown', 'html', 'jsonl', 'warc' or None
    (unsupported)."""
    name = posixpath.basename(path).lower()
    if is_warc(name):
        return "warc", False  # a .warc.gz is gzipped record by record: warcio reads it
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    ext = posixpath.splitext(name)[1]
    if ext in TEXT_EXTENSIONS:
        return TEXT_EXTENSIONS[ext], gzipped
    if ext in HTML_EXTENSIONS:
        return HTML_EXTENSIONS[ext], gzipped
    if ext in JSONL_EXTENSIONS:
        return "jsonl", gzipped
    return None, gzipped


def looks_binary(data: bytes) -> bool:
    """True when the head of `data` has NUL bytes or is mostly control characters: text in any
    common encoding has neither (UTF-16 without a BOM is the one casualty, and is rare)."""
    head = data[:_SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a BOM
        return False
    if b"\x00" in head:
        return True
    controls = len(head.translate(None, _TEXT_BYTES))
    return controls > 0.1 * max(len(head), 1)


def _optional_str(value) -> str | None:
    if value is None:
        return None
    text = valid_unicode(str(value)).strip()
    return text or None


def _as_str_list(value, separator: str) -> list[str]:
    """A list of non-empty strings from a list, or from one string cut at `separator`."""
    if value is None:
        return []
    items = value.split(separator) if isinstance(value, str) else \
        value if isinstance(value, (list, tuple)) else [value]
    return [text for text in map(_optional_str, items) if text]


class InvalidRecord(ValueError):
    pass


def document_from_record(record, source_uri: str) -> Document:
    """A Document from one parsed JSONL value. Known keys: url, title, text or html,
    published_at (or date/published), publisher (or source/site), categories (or category/
    section/tags), id, description, authors (or author), language. Others are ignored."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"a line must hold a JSON object, not {type(record).__name__}")
    html, text = record.get("html"), record.get("text")
    if isinstance(html, str) and html.strip():
        kind, content = "html", valid_unicode(html)
    elif isinstance(text, str) and text.strip():
        kind, content = "text", valid_unicode(text)
    else:
        raise InvalidRecord("the record has no non-empty 'text' or 'html' string")
    first = lambda *keys: next((record[k] for k in keys if record.get(k) not in (None, "", [])),
                               None)
    return Document(
        source_uri=source_uri,
        kind=kind,
        content=content,
        source_id=_optional_str(record.get("id")),
        url=_optional_str(record.get("url")),
        title=_optional_str(record.get("title")),
        description=_optional_str(record.get("description")),
        authors=_as_str_list(first("authors", "author"), ";"),
        publisher=_optional_str(first("publisher", "source", "site")),
        published_at=_optional_str(first("published_at", "published", "date")),
        categories=_as_str_list(first("categories", "category", "section", "tags"), ","),
        language=_optional_str(record.get("language")),
    )


# --- Reading -------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


def _read_capped(path: str, gzipped: bool, max_bytes: int) -> bytes:
    """The (decompressed) bytes of a file, raising _TooLarge past `max_bytes`: a gzip bomb is
    cut off after max_bytes + 1 bytes, never inflated whole."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _TooLarge()
    return data


def _capped_lines(stream, max_bytes: int):
    """(line number, line or None when longer than max_bytes, length) for each non-blank line;
    a long line is skipped through in chunks, never held whole."""
    number = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        length = len(line)
        if length > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
                length += len(line)
            yield number, None, length
        elif line.strip():
            yield number, line, length


def _folder_of(pattern: str) -> str:
    """The folder a glob reads below: the part before its first wildcard, up to a '/'."""
    cut = min(pattern.find(ch) for ch in "*?[" if ch in pattern)
    return pattern[:cut].rsplit("/", 1)[0]


class MatchInputsFn(beam.DoFn):
    """A path or glob -> the FileMetadata of the files it names; a pattern that names nothing
    -> ERRORS. Names starting with '.' below a glob's folder are left out; a file named outright
    is always read. A path on an object store that is no object is read as a folder."""

    def __init__(self, run_id: str):
        self._run_id = run_id

    def process(self, pattern: str):
        found, folder = _match(pattern), None
        if has_wildcard(pattern):
            folder = _folder_of(pattern)
        elif not found:  # on an object store, a folder is no object of its own
            folder = pattern.rstrip("/")
            found = _match(folder + "/**")
        if folder is not None:
            found = [m for m in found if not is_hidden(m.path[len(folder):])]
        if not found:
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(
                errors.STAGE_READ, errors.NO_MATCH, "no file matches this input", pattern,
                self._run_id))
        yield from found


def _match(pattern: str) -> list:
    return FileSystems.match([pattern])[0].metadata_list


class ReadDocumentsFn(beam.DoFn):
    """FileMetadata -> Documents; unusable files -> ERRORS."""

    def __init__(self, run_id: str, max_document_bytes: int):
        self._run_id = run_id
        self._max_bytes = max_document_bytes

    def _error(self, reason: str, message: str, source_uri: str):
        return beam.pvalue.TaggedOutput(
            ERRORS, error_row(errors.STAGE_READ, reason, message, source_uri, self._run_id))

    def process(self, metadata):
        path = metadata.path
        kind, gzipped = file_kind(path)
        if kind is None:
            yield self._error(errors.UNSUPPORTED_TYPE,
                              "not a supported input type (.txt .md .html .htm .jsonl, "
                              "optionally .gz; .warc, .warc.gz)", path)
            return
        if kind == "warc":
            yield from read_warc(path, self._max_bytes, self._run_id)
            return
        if metadata.size_in_bytes == 0:
            yield self._error(errors.EMPTY_INPUT, "the file is empty", path)
            return
        if kind == "jsonl":
            yield from self._read_jsonl(path, gzipped)
            return
        if not gzipped and metadata.size_in_bytes > self._max_bytes:
            yield self._error(errors.TOO_LARGE, f"{metadata.size_in_bytes} bytes; the limit is "
                              f"{self._max_bytes} (--max_document_bytes)", path)
            return
        try:
            data = _read_capped(path, gzipped, self._max_bytes)
        except _TooLarge:
            yield self._error(errors.TOO_LARGE, f"more than {self._max_bytes} bytes once "
                              "decompressed (--max_document_bytes)", path)
            return
        except (OSError, EOFError, zlib.error) as error:
            yield self._error(errors.READ_FAILED, f"{type(error).__name__}: {error}", path)
            return
        if not data.strip():
            yield self._error(errors.EMPTY_INPUT, "the file holds only white space", path)
        elif looks_binary(data):
            yield self._error(errors.BINARY_CONTENT,
                              "binary content (NUL or control bytes), not text", path)
        else:
            yield Document(source_uri=path, kind=kind, content=data)

    def _read_jsonl(self, path: str, gzipped: bool):
        records = 0
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
                for number, line, length in _capped_lines(stream, self._max_bytes):
                    records += 1
                    yield self._jsonl_line(line, length, f"{path}#L{number}")
        except (OSError, EOFError, zlib.error) as error:
            yield self._error(errors.READ_FAILED, f"{type(error).__name__} after {records} "
                              f"records: {error}", path)
            return
        if records == 0:
            yield self._error(errors.EMPTY_INPUT, "the JSONL file has no records", path)

    def _jsonl_line(self, line: bytes | None, length: int, source_uri: str):
        if line is None:
            return self._error(errors.TOO_LARGE, f"a {length}-byte line; the limit is "
                               f"{self._max_bytes} (--max_document_bytes)", source_uri)
        try:
            record = json.loads(line)
        # ValueError covers bad UTF-8 and JSON, and integers past Python's digit limit;
        # RecursionError, arrays nested thousands deep.
        except (ValueError, RecursionError) as error:
            return self._error(errors.MALFORMED_JSONL,
                               f"not valid JSON: {type(error).__name__}: {error}", source_uri)
        try:
            return document_from_record(record, source_uri)
        except InvalidRecord as error:
            source_id = _optional_str(record.get("id")) if isinstance(record, dict) else None
            return beam.pvalue.TaggedOutput(ERRORS, error_row(
                errors.STAGE_READ, errors.INVALID_RECORD, str(error), source_uri, self._run_id,
                source_id=source_id))


def _any_one(metadata_of_one_path):
    """Any one of the (identical) FileMetadata two patterns found for one path."""
    return next(iter(metadata_of_one_path))


class ReadInputs(beam.PTransform):
    """Input paths, folders or globs -> {"documents": Documents, ERRORS: ErrorRows, SKIPPED:
    the kinds of WARC records that are no pages}.
    A file named by two patterns is read once."""

    def __init__(self, inputs: list[str], run_id: str, max_document_bytes: int):
        super().__init__()
        self._patterns = sorted({expand_input(path) for path in inputs})
        self._run_id = run_id
        self._max_bytes = max_document_bytes

    def expand(self, pipeline):
        matched = (
            pipeline
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> beam.ParDo(MatchInputsFn(self._run_id)).with_outputs(
                ERRORS, main="files"))
        read = (
            matched.files
            | "KeyByPath" >> beam.Map(lambda metadata: (metadata.path, metadata))
            | "OncePerPath" >> beam.CombinePerKey(_any_one)
            | "Metadata" >> beam.Values()
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadDocumentsFn(self._run_id, self._max_bytes))
                .with_outputs(ERRORS, SKIPPED, main="documents"))
        errors_ = (matched[ERRORS], read[ERRORS]) | "ReadErrors" >> beam.Flatten()
        return {"documents": read.documents, ERRORS: errors_, SKIPPED: read[SKIPPED]}
