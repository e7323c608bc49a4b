"""Local and cloud-storage inputs: paths, folders and globs become Documents.

A file's kind comes from its extension (a trailing .gz is looked through):
  .txt .text         plain text         -> one Document
  .md .markdown      Markdown text      -> one Document (a leading '# Title' is the title)
  .html .htm .xhtml  a saved page       -> one Document
  .jsonl .ndjson     one article a line -> one Document per non-blank line
  .warc (.warc.gz)   a web archive      -> one Document per HTML response record
                                            (transforms/warc.py; other records are SKIPPED)
Anything else, and any file that is too large, empty or binary, becomes an errors/ row. Folders
are read recursively; names starting with '.' are skipped (editor, OS and temp files). A path
that exists is taken literally before it is read as a glob. Local links are followed; a file is
named by its resolved path, so one reached twice is read once; a link loop, a link back to a
folder above, a link to nothing and a FIFO, socket or device are errors/ rows. A name that is not
UTF-8 is read, shown with its undecodable bytes as %XX (printable_path). A file that index/inputs
records as unchanged is not read at all (transforms/input_index.py).
Every path is read through Beam's FileSystems, so gs:// and other registered schemes work too.
"""

from __future__ import annotations

import datetime as dt
import errno
import gzip
import json
import logging
import os
import posixpath
import re
import stat
import zlib

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Document, ErrorRow, InputIndexEntry
from newsbeam.transforms import errors, metrics
from newsbeam.transforms.errors import ERRORS, error_row, exception_summary
from newsbeam.transforms.input_index import (INPUT_FACTS, REFRESHED, UNCHANGED, HashingReader, InputFacts,
                                             SkipUnchanged, file_hash)
from newsbeam.transforms.text import valid_unicode
from newsbeam.transforms.warc import SKIPPED, is_warc, read_warc

TEXT_EXTENSIONS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
HTML_EXTENSIONS = {".html": "html", ".htm": "html", ".xhtml": "html"}
JSONL_EXTENSIONS = {".jsonl", ".ndjson"}

_LOG = logging.getLogger(__name__)

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
    however it was named), a folder becomes '<folder>/**', a file or glob stays. A path that
    exists is taken literally, wildcard characters and all ('report[1].txt')."""
    if is_local(path):
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(path):
            return path + "/**"
    if path.endswith("/"):
        return path + "**"
    return path


def escape_wildcards(path: str) -> str:
    """`path` as a Beam glob that names just it: '*', '?' and '[' each in a class of its own."""
    return re.sub(r"([*?[])", r"[\1]", path)


# Bytes that are no UTF-8 reach Python as lone surrogates U+DC80..U+DCFF (PEP 383).
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def printable_path(path: str) -> str:
    """`path` as newsbeam writes it (source_uri): a file name that is not valid UTF-8 keeps its
    other characters, each undecodable byte written as %XX ('\\xff\\xfe.txt' -> '%FF%FE.txt').
    Only those bytes are escaped, so '%' itself stays as it is; the file is opened by its real
    name."""
    return _UNDECODABLE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", path)


def path_key(path: str) -> bytes:
    """The bytes of a name, whatever they decode to: how a name that is not UTF-8 travels
    through Beam (whose str coder takes only UTF-8)."""
    return path.encode("utf-8", "surrogateescape")


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


def _read_capped(raw, gzipped: bool, max_bytes: int) -> bytes:
    """The (decompressed) bytes of a file's stream, raising _TooLarge past `max_bytes`: a gzip
    bomb is cut off after max_bytes + 1 bytes, never inflated whole."""
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


# A file read whole; else (first, stop): its records numbered first <= n < stop (from 0).
WHOLE_FILE = (0, None)


def slice_uri(source_uri: str, records=WHOLE_FILE) -> str:
    """How index/inputs names a slice of a file that a batched run read in parts
    ('/in/a.jsonl#records=0-5000'); a whole file is named by itself."""
    if records == WHOLE_FILE:
        return source_uri
    first, stop = records
    return f"{source_uri}#records={first}-{'' if stop is None else stop}"


def record_count(path: str, max_bytes: int) -> int:
    """How many records a file holds, numbered as the readers number them (a batched run
    slices a file by these numbers): the non-blank lines of a JSONL file, the records of a WARC
    archive (pages or not), 1 for any other file. A file that cannot be read through counts 1:
    it is read whole, and its reader reports what is wrong with it."""
    kind, gzipped = file_kind(path)
    if kind not in ("jsonl", "warc"):
        return 1
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            if kind == "warc":
                from warcio.archiveiterator import ArchiveIterator
                return max(1, sum(1 for _ in ArchiveIterator(raw)))
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            return max(1, sum(1 for _ in _capped_lines(stream, max_bytes)))
    except Exception:  # warcio's ArchiveLoadFailed, zlib and OS errors: read whole, reported
        return 1


# --- Finding files -------------------------------------------------------------------------------


def _literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard; a one-character class ('[[]', '[*]') is the
    character itself."""
    prefix, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in "*?":
            break
        if ch == "[":
            if i + 2 < len(pattern) and pattern[i + 2] == "]" and pattern[i + 1] not in "!^":
                prefix.append(pattern[i + 1])
                i += 3
                continue
            break
        prefix.append(ch)
        i += 1
    return "".join(prefix)


def folder_of(pattern: str) -> str:
    """The folder a glob reads below: its literal part, up to the last '/'."""
    return _literal_prefix(pattern).rsplit("/", 1)[0]


def _resolved_name(path: str) -> str:
    """The path of a link itself (which may resolve to nothing), its folder resolved: one name
    for one link however the folders above it were reached."""
    folder, name = os.path.split(path)
    return os.path.join(os.path.realpath(folder), name)


def _walk_local(folder: str, keep=None, report_folders: bool = True):
    """Every file below a local folder, following links: ('file', resolved path, os.stat_result),
    and what cannot be read as ('problem', path, reason, message): a link that loops on itself or
    leads nowhere, a link back to a folder above it (not followed: it would never end), a FIFO,
    socket or device, a folder that cannot be listed. Names starting with '.' are left out (and
    hidden folders not entered). A folder reached twice by links is walked once. `keep(path)`
    chooses the files (and file problems) of a glob; problems of folders are reported only when
    `report_folders`. Depth-first, in name order."""
    keep = keep or (lambda _path: True)
    top = os.stat(folder)
    seen = {(top.st_dev, top.st_ino)}
    stack = [(folder, ((top.st_dev, top.st_ino),))]
    while stack:
        current, ancestors = stack.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name, reverse=True)
        except OSError as error:
            if report_folders:
                yield ("problem", current, errors.READ_FAILED,
                       f"the folder cannot be listed: {exception_summary(error)}")
            continue
        real_folder = os.path.realpath(current)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            try:
                info = os.stat(path)  # follows links
            except OSError as error:
                if not keep(path):
                    continue
                if error.errno == errno.ELOOP:
                    yield ("problem", path, errors.SYMLINK_LOOP,
                           "a symbolic link that leads back to itself")
                elif entry.is_symlink():
                    yield ("problem", path, errors.BROKEN_LINK,
                           f"a symbolic link to nothing ({_readlink(path)})")
                else:
                    yield "problem", path, errors.READ_FAILED, exception_summary(error)
                continue
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    if report_folders:
                        yield ("problem", path, errors.DIRECTORY_LOOP,
                               f"a link back to the folder {os.path.realpath(path)} above it; "
                               "not followed")
                elif identity not in seen:
                    seen.add(identity)
                    stack.append((path, ancestors + (identity,)))
            elif not keep(path):
                continue
            elif stat.S_ISREG(info.st_mode):
                real = os.path.realpath(path) if entry.is_symlink() else \
                    os.path.join(real_folder, entry.name)
                yield "file", real, info
            else:
                yield ("problem", path, errors.UNSUPPORTED_TYPE,
                       "not a regular file (a FIFO, socket or device)")


def _readlink(path: str) -> str:
    try:
        return printable_path(os.readlink(path))
    except OSError:
        return "unreadable"


def _match(pattern: str) -> list:
    return FileSystems.match([pattern])[0].metadata_list


# Live counters (transforms/metrics.py): files (and unreadable entries) found, and read.
READ_FILES_MATCHED = f"{metrics.STAGE_READ}_files_matched"
READ_FILES_DONE = f"{metrics.STAGE_READ}_files_done"
READ_LISTING_FAILED = f"{metrics.STAGE_READ}_listing_failed"   # a watched pattern's, retried


class MatchInputsFn(beam.DoFn):
    """A path or glob (as bytes: a local name need not be UTF-8) -> (key, FileMetadata) for each
    file it names, and (key, ErrorRow) for each entry below it that cannot be read (a symbolic
    link loop, a directory loop, a link to nothing); the key is the file's resolved name, so a
    file reached twice is read once and a bad entry is one row. A pattern that names nothing ->
    ERRORS. An existing path is taken literally before it is read as a glob. Names starting with
    '.' below a folder or a glob's folder are left out; a file named outright is always read. A
    path on an object store that is no object is read as a folder.
    `watching` (a stream's watched --input, listed at every poll): a pattern that names nothing
    yet, or whose listing failed this time, is no input and no error row; it is looked at again
    at the next poll (a failed listing is logged and counted, read_listing_failed)."""

    def __init__(self, run_id: str, watching: bool = False):
        self._run_id = run_id
        self._watching = watching

    @metrics.timed(metrics.STAGE_READ)
    def process(self, pattern_bytes: bytes):
        pattern = pattern_bytes.decode("utf-8", "surrogateescape")
        found = 0
        try:
            for keyed in self.found(pattern):
                found += 1
                if not self._watching:
                    metrics.count(READ_FILES_MATCHED)
                yield keyed
        except Exception as error:  # a listing that failed, and what nobody foresaw
            found += 1
            if self._watching:
                metrics.count(READ_LISTING_FAILED)
                _LOG.warning("watching %s: listing failed (%s); trying again at the next poll",
                             printable_path(pattern), exception_summary(error))
                return
            reason = errors.READ_FAILED if isinstance(error, OSError) else errors.INTERNAL_ERROR
            yield errors.counted(self._row(
                reason, f"listing failed: {exception_summary(error)}", printable_path(pattern)))
        if not found and not self._watching:
            yield errors.counted(self._row(
                errors.NO_MATCH, "no file matches this input", printable_path(pattern)))

    def found(self, pattern: str):
        """(key, FileMetadata or ErrorRow) for each file and bad entry `pattern` names, as
        process finds them (uncounted: what a batched run's planning lists, before it runs)."""
        return self._local(pattern) if is_local(pattern) else self._remote(pattern)

    def _row(self, reason: str, message: str, source_uri: str):
        """The row of an entry that cannot be read; one found by the walk goes on, keyed, to the
        read step, which emits (and counts) it."""
        return error_row(errors.STAGE_READ, reason, message, source_uri, self._run_id)

    def _local(self, pattern: str):
        if os.path.lexists(pattern) and not os.path.isdir(pattern):
            yield from self._found(_walk_named(pattern))
            return
        folder, keep, report_folders = None, None, True
        if pattern.endswith("/**") and os.path.isdir(pattern[:-3]):
            folder = pattern[:-3]                   # a folder, named as one
        elif os.path.isdir(pattern):
            folder = pattern
        elif has_wildcard(pattern):
            folder = folder_of(pattern)
            regex = re.compile(FileSystem.translate_pattern(pattern))
            keep = lambda path: regex.match(path) is not None
            report_folders = "**" in pattern        # a loop matters where the glob goes deep
        if folder is not None and os.path.isdir(folder):
            yield from self._found(_walk_local(folder, keep, report_folders))

    def _found(self, walked):
        for item in walked:
            if item[0] == "file":
                _, path, info = item
                yield printable_path(path), FileMetadata(path, info.st_size, info.st_mtime)
            else:
                _, path, reason, message = item
                name = _resolved_name(path)
                yield printable_path(name), self._row(reason, message, printable_path(name))

    def _remote(self, pattern: str):
        if has_wildcard(pattern) and FileSystems.exists(pattern):
            found, folder = _match(escape_wildcards(pattern)), None   # an object, by its name
        elif has_wildcard(pattern):
            found, folder = _match(pattern), folder_of(pattern)
        else:
            found, folder = _match(pattern), None
        if not found:  # on an object store, a folder is no object of its own
            folder = pattern.rstrip("/")
            found = _match(escape_wildcards(folder) + "/**")
        if folder is not None:
            found = [m for m in found if not is_hidden(m.path[len(folder):])]
        for metadata in found:
            yield printable_path(metadata.path), metadata


def _walk_named(path: str):
    """The walk of one file named outright (hidden or not): the file, or why it is none."""
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            yield "problem", path, errors.SYMLINK_LOOP, "a symbolic link that leads back to itself"
        elif os.path.islink(path):
            yield ("problem", path, errors.BROKEN_LINK,
                   f"a symbolic link to nothing ({_readlink(path)})")
        else:
            yield "problem", path, errors.READ_FAILED, exception_summary(error)
        return
    if stat.S_ISREG(info.st_mode):
        yield "file", os.path.realpath(path), info
    else:
        yield ("problem", path, errors.UNSUPPORTED_TYPE,
               "not a regular file (a FIFO, socket or device)")


# The documents of a file that holds many (JSONL lines, WARC records): one file is read by one
# worker, so they are spread over the workers before extraction (ReadInputs), where a file of
# one document each is spread already.
RECORDS = "records"


def _as_records(outputs):
    """A multi-document file's outputs, its Documents tagged RECORDS."""
    for output in outputs:
        yield beam.pvalue.TaggedOutput(RECORDS, output) if isinstance(output, Document) \
            else output


class ReadDocumentsFn(beam.DoFn):
    """(FileMetadata, its index/inputs row or None) -> Documents; unusable files -> ERRORS (an
    ErrorRow found while matching passes through); INPUT_FACTS for each file read. A file whose
    size or time differ from its row but whose bytes hash to the recorded ones is not read: it is
    UNCHANGED, and its row REFRESHED. Whatever one file raises becomes its INTERNAL_ERROR row: no
    input ends the run."""

    def __init__(self, run_id: str, max_document_bytes: int, recorded_at: dt.datetime,
                 slices: dict | None = None):
        self._run_id = run_id
        self._max_bytes = max_document_bytes
        self._recorded_at = recorded_at
        self._slices = slices or {}

    def _error(self, reason: str, message: str, source_uri: str):
        return errors.error_output(errors.STAGE_READ, reason, message, source_uri, self._run_id)

    @metrics.timed(metrics.STAGE_READ)
    def process(self, element):
        metrics.count(READ_FILES_DONE)
        item, entry = element
        if isinstance(item, ErrorRow):
            yield errors.counted(item)
            return
        source_uri = printable_path(item.path)
        records = self._slices.get(item.path, WHOLE_FILE)
        # A slice of a file (a batched run's) is recorded in index/inputs as a unit of its own.
        recorded_uri = slice_uri(source_uri, records)
        try:
            if entry is not None and entry["content_hash"]:
                digest = file_hash(item.path)
                if digest == entry["content_hash"]:   # touched, not changed
                    yield from self._unchanged(item, entry, recorded_uri)
                    return
            hashed, inputs = {}, 0
            for output in self._read(item, source_uri, hashed, records):
                inputs += getattr(output, "tag", None) != SKIPPED
                yield output
            yield beam.pvalue.TaggedOutput(INPUT_FACTS, InputFacts(
                recorded_uri, item.size_in_bytes, item.last_updated_in_seconds,
                hashed.get("digest"), inputs))
        except Exception as error:  # a bug or a surprise: this file's row, not the run's end
            yield self._error(errors.INTERNAL_ERROR, exception_summary(error), source_uri)

    def _unchanged(self, metadata, entry: dict, source_uri: str):
        for _ in range(entry["inputs"]):
            yield beam.pvalue.TaggedOutput(UNCHANGED, source_uri)
        yield beam.pvalue.TaggedOutput(REFRESHED, InputIndexEntry(
            source_uri=source_uri, size=metadata.size_in_bytes,
            mtime=metadata.last_updated_in_seconds, inputs=entry["inputs"],
            outcome=entry["outcome"], run_id=self._run_id, recorded_at=self._recorded_at,
            content_hash=entry["content_hash"]))

    def _read(self, metadata, source_uri: str, hashed: dict, records=WHOLE_FILE):
        """The outputs of one file (of its `records` slice, for a JSONL file or an archive);
        hashed["digest"] is set to the SHA-256 of its bytes when it was read (every byte goes
        through the hash as the readers take it)."""
        path = metadata.path
        kind, gzipped = file_kind(path)
        if kind is None:
            yield self._error(errors.UNSUPPORTED_TYPE,
                              "not a supported input type (.txt .md .html .htm .jsonl, "
                              "optionally .gz; .warc, .warc.gz)", source_uri)
            return
        if kind != "warc" and metadata.size_in_bytes == 0:
            yield self._error(errors.EMPTY_INPUT, "the file is empty", source_uri)
            return
        if kind not in ("warc", "jsonl") and not gzipped and \
                metadata.size_in_bytes > self._max_bytes:
            yield self._error(errors.TOO_LARGE, f"{metadata.size_in_bytes} bytes; the limit is "
                              f"{self._max_bytes} (--max_document_bytes)", source_uri)
            return
        try:
            raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except OSError as error:   # BeamIOError too
            yield self._error(errors.READ_FAILED, exception_summary(error), source_uri)
            return
        with raw:
            stream = HashingReader(raw)
            if kind == "warc":
                yield from _as_records(read_warc(path, self._max_bytes, self._run_id,
                                                 source_uri, stream, records))
            elif kind == "jsonl":
                yield from _as_records(self._read_jsonl(stream, gzipped, source_uri, records))
            else:
                yield self._read_document(stream, kind, gzipped, source_uri)
            hashed["digest"] = stream.finish()

    def _read_document(self, stream, kind: str, gzipped: bool, source_uri: str):
        try:
            data = _read_capped(stream, gzipped, self._max_bytes)
        except _TooLarge:
            return self._error(errors.TOO_LARGE, f"more than {self._max_bytes} bytes once "
                               "decompressed (--max_document_bytes)", source_uri)
        except (OSError, EOFError, zlib.error) as error:
            return self._error(errors.READ_FAILED, f"{type(error).__name__}: {error}",
                               source_uri)
        if not data.strip():
            return self._error(errors.EMPTY_INPUT, "the file holds only white space", source_uri)
        if looks_binary(data):
            return self._error(errors.BINARY_CONTENT,
                               "binary content (NUL or control bytes), not text", source_uri)
        return Document(source_uri=source_uri, kind=kind, content=data)

    def _read_jsonl(self, raw, gzipped: bool, source_uri: str, slice_=WHOLE_FILE):
        first, stop = slice_
        records = 0
        try:
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            for number, line, length in _capped_lines(stream, self._max_bytes):
                records += 1
                if stop is not None and records > stop:
                    break
                if records > first:
                    yield self._jsonl_line(line, length, f"{source_uri}#L{number}")
        except (OSError, EOFError, zlib.error) as error:
            yield self._error(errors.READ_FAILED, f"{type(error).__name__} after {records} "
                              f"records: {error}", source_uri)
            return
        if records == 0:
            yield self._error(errors.EMPTY_INPUT, "the JSONL file has no records", source_uri)

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
            return errors.error_output(
                errors.STAGE_READ, errors.INVALID_RECORD, str(error), source_uri, self._run_id,
                source_id=source_id)


class ReadFiles(beam.PTransform):
    """(FileMetadata or ErrorRow, its index/inputs row or None) -> {"documents", ERRORS,
    SKIPPED, UNCHANGED, INPUT_FACTS, REFRESHED} (ReadDocumentsFn): the read step of a batch
    run's --input and of a stream's watched folders alike. The records of a multi-record file
    (JSONL, WARC) are spread over the workers: without that, every record of a file would be
    extracted (and, locally, shuffled on) by the worker that read the file, so one 100k-record
    WARC would be one worker's work."""

    def __init__(self, run_id: str, max_document_bytes: int, recorded_at: dt.datetime,
                 slices: dict | None = None):
        super().__init__()
        self._run_id, self._max_bytes, self._recorded_at = \
            run_id, max_document_bytes, recorded_at
        self._slices = slices  # a batch's record ranges of files read in part (ReadDocumentsFn)

    def expand(self, to_read):
        read = to_read | "ReadDocuments" >> beam.ParDo(ReadDocumentsFn(
            self._run_id, self._max_bytes, self._recorded_at, self._slices)).with_outputs(
            ERRORS, SKIPPED, UNCHANGED, INPUT_FACTS, REFRESHED, RECORDS, main="documents")
        records = read[RECORDS] | "SpreadRecords" >> beam.Reshuffle()
        documents = (read.documents, records) | "AllDocuments" >> beam.Flatten()
        return {"documents": documents,
                **{tag: read[tag] for tag in (ERRORS, SKIPPED, UNCHANGED, INPUT_FACTS, REFRESHED)}}


class ReadInputs(beam.PTransform):
    """Input paths, folders or globs -> {"documents": Documents, ERRORS: ErrorRows, SKIPPED:
    the kinds of WARC records that are no pages, UNCHANGED: one element per input of each file
    skipped as unchanged, INPUT_FACTS: what each file read gave, REFRESHED: index/inputs rows of
    touched files with the same bytes}.
    A file named by two patterns, or reached through two links, is read once. `input_index`:
    the rows of index/inputs (transforms/input_index.py); none, every file is read."""

    def __init__(self, inputs: list[str], run_id: str, max_document_bytes: int,
                 input_index=None, recorded_at: dt.datetime | None = None, batch=None):
        """batch: an InputBatch (transforms/batches.py): only its files, or slices of them, are
        read, and what matching found wrong is reported by the batch that says so."""
        super().__init__()
        self._patterns = sorted({expand_input(path) for path in inputs})
        self._run_id = run_id
        self._max_bytes = max_document_bytes
        self._input_index = input_index
        self._recorded_at = recorded_at or dt.datetime.now(dt.timezone.utc)
        self._batch = batch

    def expand(self, pipeline):
        matched = (
            pipeline
            # As bytes: a local name need not be UTF-8, and Beam's str coder accepts only that.
            | "Patterns" >> beam.Create([path_key(p) for p in self._patterns])
            | "Match" >> beam.ParDo(MatchInputsFn(self._run_id)).with_outputs(
                ERRORS, main="files"))
        index_rows = self._input_index if self._input_index is not None else \
            pipeline | "NoInputIndex" >> beam.Create([])
        found, match_errors, slices = matched.files, matched[ERRORS], {}
        if self._batch is not None:
            batch = self._batch
            slices = {path: records for path, records in batch.files.items()
                      if records != WHOLE_FILE}
            found = found | "ThisBatch" >> beam.FlatMap(batch.keep)
            if not batch.match_errors:
                match_errors = match_errors | "ReportedByAnother" >> beam.Filter(lambda _: False)
        decided = found | "SkipUnchanged" >> SkipUnchanged(index_rows)
        read = (decided.to_read | "Spread" >> beam.Reshuffle()
                | "Read" >> ReadFiles(self._run_id, self._max_bytes, self._recorded_at, slices))
        errors_ = (match_errors, read[ERRORS]) | "ReadErrors" >> beam.Flatten()
        unchanged = (decided[UNCHANGED], read[UNCHANGED]) | "Unchanged" >> beam.Flatten()
        return {"documents": read["documents"], ERRORS: errors_, SKIPPED: read[SKIPPED],
                UNCHANGED: unchanged, INPUT_FACTS: read[INPUT_FACTS], REFRESHED: read[REFRESHED]}
