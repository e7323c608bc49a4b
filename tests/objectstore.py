"""An in-memory object store registered with Beam's FileSystems as 'memobj://', for tests of
the code paths that cloud storage (gs://, s3://) takes: no folders, only objects under key
prefixes; rename is copy then delete; deleting a missing object is an error. Objects live in a
class-level dict, so it serves pipelines run in this process (FnApiRunner in memory)."""

from __future__ import annotations

import io
import threading
import time

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

from newsbeam.transforms import lease

SCHEME = "memobj"


class _Upload(io.BytesIO):
    """Bytes written to an object become visible when the writer is closed, as on GCS."""

    def __init__(self, store: dict, path: str):
        super().__init__()
        self._store, self._path = store, path

    def close(self):
        if not self.closed:
            self._store[self._path] = (self.getvalue(), time.time())
        super().close()


class MemoryObjectStore(FileSystem):
    objects: dict[str, tuple[bytes, float]] = {}

    @classmethod
    def scheme(cls):
        return SCHEME

    @classmethod
    def clear(cls):
        cls.objects.clear()

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass  # there are no folders

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, (data, updated) in sorted(self.objects.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), updated)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Upload(self.objects, path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        if path not in self.objects:
            raise BeamIOError("open failed", {path: FileNotFoundError(path)})
        return io.BytesIO(self.objects[path][0])

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            self.objects[destination] = (self.objects[source][0], time.time())

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return path in self.objects

    def size(self, path):
        return len(self.objects[path][0])

    def last_updated(self, path):
        return self.objects[path][1]

    def checksum(self, path):
        return str(hash(self.objects[path][0]))

    def metadata(self, path):
        data, updated = self.objects[path]
        return FileMetadata(path, len(data), updated)

    def delete(self, paths):
        missing = {p: FileNotFoundError(p) for p in paths if p not in self.objects}
        if missing:
            raise BeamIOError("delete failed", missing)
        for path in paths:
            del self.objects[path]


class MemoryLeaseStore:
    """Compare-and-swap on one object of the store, as GCS does with generation preconditions
    (the token here is the object's bytes)."""

    _lock = threading.Lock()

    def read(self, path):
        data = MemoryObjectStore.objects.get(path, (None, 0))[0]
        return data, data

    def swap(self, path, data, token):
        with self._lock:
            if MemoryObjectStore.objects.get(path, (None, 0))[0] != token:
                return None
            if data is None:
                del MemoryObjectStore.objects[path]
                return b""
            MemoryObjectStore.objects[path] = (data, time.time())
            return data


lease.register_store(SCHEME, MemoryLeaseStore)
