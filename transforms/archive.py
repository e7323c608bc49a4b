"""Raw captures (--archive_warc DIR): the responses a run fetched (feeds, sitemaps, pages) kept
as WARC files, as CC-NEWS and Media Cloud keep theirs, so that a later newsbeam can extract them
again (`newsbeam run --input DIR/*.warc.gz`, transforms/warc.py).

Each file opens with a warcinfo record (newsbeam's version, the run, the dataset) and holds, per
response, a `response` record (status line, headers and body as newsbeam read them: the body
content-decoded, so Content-Encoding and Transfer-Encoding are dropped and Content-Length is the
stored length) and a `metadata` record concurrent to it (the run, what the request was for, the
feed it came from). A worker writes one file per bundle under a hidden temporary name and
renames it when it is complete: a file that can be seen is whole. Names carry the run id:
`newsbeam-<run_id>-<random>.warc.gz`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import posixpath
import uuid
from http.client import responses as REASONS

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

__all__ = ["WarcArchive", "ArchiveResponses", "response_record_headers"]

_DROPPED_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


@dataclasses.dataclass(frozen=True)
class WarcArchive:
    """Where captures go and what their warcinfo says."""
    folder: str
    run_id: str
    info: dict


# --- Pure functions ------------------------------------------------------------------------------


def response_record_headers(status: int, headers: dict, body_length: int) -> list[tuple]:
    """The HTTP headers of a stored response: as received, less those that described the bytes
    on the wire rather than the body stored, and with the stored body's Content-Length."""
    kept = [(name.title(), value) for name, value in sorted(headers.items())
            if name.lower() not in _DROPPED_HEADERS]
    return kept + [("Content-Length", str(body_length))]


def archive_file_name(run_id: str) -> str:
    return f"newsbeam-{run_id}-{uuid.uuid4().hex[:12]}.warc.gz"


def _payload_meta(request) -> dict:
    payload = request.payload
    return {key: value for key, value in {
        "requested_url": request.url, "source_uri": request.source_uri,
        "feed_url": getattr(payload, "feed_url", None),
        "feed_entry_id": getattr(payload, "feed_entry_id", None),
        "kind": getattr(payload, "kind", None) if hasattr(payload, "location") else "page",
    }.items() if value is not None}


# --- DoFn and composite --------------------------------------------------------------------------


class _WriteWarcFn(beam.DoFn):
    """(FetchRequest, Response) pairs -> one WARC file per bundle, renamed into place whole;
    emits the name of each file written."""

    def __init__(self, archive: WarcArchive):
        self._archive = archive

    def start_bundle(self):
        self._stream = None
        self._writer = None

    def _open(self):
        """A temporary file, written record by record (memory does not grow with a bundle)."""
        from warcio.warcwriter import WARCWriter
        folder = self._archive.folder.rstrip("/")
        if FileSystems.get_scheme(folder) is None:
            os.makedirs(os.path.expanduser(folder), exist_ok=True)
            folder = os.path.expanduser(folder)
        self._name = archive_file_name(self._archive.run_id)
        self._final = posixpath.join(folder, self._name)
        self._temp = posixpath.join(folder, f".{self._name}.{uuid.uuid4().hex[:8]}.tmp")
        self._stream = FileSystems.create(self._temp)
        self._writer = WARCWriter(self._stream, gzip=True)
        info = self._writer.create_warcinfo_record(self._name, self._archive.info)
        self._writer.write_record(info)

    def process(self, pair):
        from warcio.statusandheaders import StatusAndHeaders
        request, response = pair
        if response.status != 200:
            return
        if self._writer is None:
            self._open()
        reason = REASONS.get(response.status, "")
        http_headers = StatusAndHeaders(
            f"{response.status} {reason}".strip(),
            response_record_headers(response.status, response.headers, len(response.body)),
            protocol="HTTP/1.1")
        date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = self._writer.create_warc_record(
            response.url, "response", payload=io.BytesIO(response.body),
            http_headers=http_headers, warc_headers_dict={"WARC-Date": date})
        self._writer.write_record(record)
        meta = self._writer.create_warc_record(
            response.url, "metadata",
            payload=io.BytesIO(json.dumps({"run_id": self._archive.run_id,
                                           **_payload_meta(request)}).encode()),
            warc_content_type="application/json",
            warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To":
                               record.rec_headers.get_header("WARC-Record-ID")})
        self._writer.write_record(meta)

    def finish_bundle(self):
        if self._writer is None:
            return
        self._stream.close()
        FileSystems.rename([self._temp], [self._final])
        self._writer = self._stream = None


class ArchiveResponses(beam.PTransform):
    """(FetchRequest, Response) pairs -> WARC files in `archive.folder` (200 responses only:
    a 304 has no body to keep)."""

    def __init__(self, archive: WarcArchive):
        super().__init__()
        self._archive = archive

    def expand(self, responses):
        return responses | "WriteWarc" >> beam.ParDo(_WriteWarcFn(self._archive))
