"""The writer lease: at most one process commits into a dataset at a time.

    OUTPUT/_leases/writer.json   {"holder": run id, "kind", "host", "pid", "pid_started",
                                  "started_at", "heartbeat_at", "expiry_s", "nonce"}

An ingest run, a compaction and a repair each take the lease before they look at the dataset
and keep it until they are done. The holder refreshes `heartbeat_at` from a background thread.
A job on a runner elsewhere takes it on a worker, in its first step, and its commit (on any
worker) releases it with `release_held` (transforms/dataset.py, StartRun). A stream's job, which
outlives any one worker, keeps it alive with `renew_held` from a timer step instead of a thread
(StartStream, HoldStreamLease).
Another process may take the lease over only from a holder that is dead: on the same host, its
pid is gone (or now names another process: the pid's start time differs); on any host, its
heartbeat is older than its `expiry_s`.

Every change of the lease object is a compare-and-swap, so two processes that both find a dead
holder cannot both take over:
- local disks: read, compare and write under `fcntl.flock` on the lease folder (the kernel drops
  the lock when its process dies, so the guard itself never goes stale);
- gs://: object generations (`if_generation_match=0` to create, `=generation` to replace or
  delete), through google-cloud-storage, which Beam's GCS filesystem itself uses;
- any other scheme: refused with a clear message (LeaseUnsupported), unless a store for it was
  registered with `register_store` (the tests' in-memory object store does that). S3 and others
  offer no create-if-absent through Beam's FileSystems, and a lease without one is no lease.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import posixpath
import secrets
import socket
import threading
import time
from typing import Callable

from apache_beam.io.filesystems import FileSystems

LEASES_FOLDER = "_leases"
WRITER_LEASE = "writer.json"
DEFAULT_EXPIRY_S = 300.0
# How often the holder refreshes its heartbeat, as a share of the expiry.
_HEARTBEAT_SHARE = 0.1
_POLL_S = 1.0

EXIT_LEASE_HELD = 75  # EX_TEMPFAIL (sysexits.h): try again later


class LeaseHeld(RuntimeError):
    """Another live process holds the lease (and it did not come free in the time allowed)."""

    def __init__(self, path: str, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(
            f"{path} is held by {holder.get('kind', 'a run')} {holder.get('holder')} "
            f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started_at')}, "
            f"last heartbeat {holder.get('heartbeat_at')}): another process is writing this "
            "dataset. Try again when it is done, or wait for it with --wait_for_lease_s")


class LeaseUnsupported(ValueError):
    """The output's filesystem offers no atomic create-if-absent: no lease can be held there."""


class LeaseLost(RuntimeError):
    """The lease this process held was taken over (it was thought dead): it must not commit."""


# --- Pure functions ------------------------------------------------------------------------------


def lease_path(output_dir: str) -> str:
    return posixpath.join(output_dir.rstrip("/"), LEASES_FOLDER, WRITER_LEASE)


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux /proc), to tell a reused
    pid from the holder; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces; the fields after its ')' do not.
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def holder_is_dead(holder: dict, now: dt.datetime, host: str | None = None) -> bool:
    """Whether a lease's holder can be taken over: its heartbeat is older than its expiry, or
    it ran on this host and its process is gone."""
    try:
        heartbeat = dt.datetime.fromisoformat(holder["heartbeat_at"])
        expiry_s = float(holder.get("expiry_s", DEFAULT_EXPIRY_S))
    except (KeyError, TypeError, ValueError):
        return True  # not a lease newsbeam wrote: no one can be holding it
    if (now - heartbeat).total_seconds() > expiry_s:
        return True
    if holder.get("host") == (host or socket.gethostname()):
        pid = int(holder.get("pid", 0))
        if pid <= 0 or not _pid_alive(pid):
            return True
        started = holder.get("pid_started")
        return started is not None and _process_start(pid) not in (None, started)
    return False


# --- Stores: compare-and-swap on one small object ------------------------------------------------


class LocalStore:
    """The lease file on a local (or NFS) disk. The token is the file's bytes; every operation
    runs under an exclusive flock on the lease folder."""

    @contextlib.contextmanager
    def _guard(self, path: str):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing drops the lock

    @staticmethod
    def _read(path: str) -> bytes | None:
        try:
            with open(path, "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def _write(path: str, data: bytes) -> None:
        temp = f"{path}.{secrets.token_hex(4)}.new"
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)  # readers outside the guard see the old or the new lease whole

    def read(self, path: str):
        data = self._read(path)
        return data, data

    def swap(self, path: str, data: bytes | None, token) -> object | None:
        """Writes `data` (None: deletes) if the object is still `token` (None: absent); returns
        the new token, or None when someone else changed it first."""
        with self._guard(path):
            if self._read(path) != token:
                return None
            if data is None:
                os.unlink(path)
                return b""
            self._write(path, data)
            return data


class GcsStore:
    """The lease object on Google Cloud Storage, by generation preconditions."""

    def __init__(self):
        self.check()
        from google.api_core import exceptions
        from google.cloud import storage
        self._client = storage.Client()
        self._exceptions = exceptions

    @staticmethod
    def check() -> None:
        """Raises LeaseUnsupported when the client library is missing; makes no request (the
        client itself looks for credentials, on the network, when it is created)."""
        try:
            from google.api_core import exceptions  # noqa: F401
            from google.cloud import storage  # noqa: F401
        except ImportError as missing:
            raise LeaseUnsupported(
                "a gs:// output needs google-cloud-storage for its lease (generation "
                "preconditions); install the GCP extras: pip install 'apache-beam[gcp]==2.77.0'"
            ) from missing

    def _blob(self, path: str):
        bucket, _, name = path[len("gs://"):].partition("/")
        return self._client.bucket(bucket).blob(name)

    def read(self, path: str):
        blob = self._blob(path)
        try:
            blob.reload()
            return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
        except (self._exceptions.NotFound, self._exceptions.PreconditionFailed):
            return None, None

    def swap(self, path: str, data: bytes | None, token):
        blob = self._blob(path)
        try:
            if data is None:
                blob.delete(if_generation_match=token)
                return 0
            blob.upload_from_string(data, content_type="application/json",
                                    if_generation_match=0 if token is None else token)
            return blob.generation
        except (self._exceptions.NotFound, self._exceptions.PreconditionFailed):
            return None


_STORES: dict[str, Callable[[], object]] = {"gs": GcsStore}


def register_store(scheme: str, factory: Callable[[], object]) -> None:
    """A lease store for another filesystem scheme: an object with read(path) -> (bytes | None,
    token) and swap(path, bytes | None, token) -> new token | None, atomic."""
    _STORES[scheme] = factory


def _store_factory(output_dir: str) -> Callable[[], object]:
    scheme = FileSystems.get_scheme(output_dir)
    if scheme is None:
        return LocalStore
    if scheme not in _STORES:
        raise LeaseUnsupported(
            f"--output {output_dir}: {scheme}:// offers no atomic create-if-absent through "
            "Beam's FileSystems, so two runs could not be kept from writing at once; use a local "
            "folder or gs://")
    return _STORES[scheme]


def store_for(output_dir: str):
    return _store_factory(output_dir)()


def check_supported(output_dir: str) -> None:
    """Raises LeaseUnsupported when no lease can be held on the output's filesystem. Touches
    neither the dataset nor the network: the launcher of a job that takes its lease on the
    workers (or of a dry run) may have no access to either."""
    factory = _store_factory(output_dir)
    check = getattr(factory, "check", None)
    if check is not None:
        check()
    else:
        factory()


# --- The lease -----------------------------------------------------------------------------------


def read_holder(output_dir: str) -> dict | None:
    """The current lease content, or None when no one holds it."""
    data, _ = store_for(output_dir).read(lease_path(output_dir))
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {}


class Lease:
    """The writer lease of one dataset, held by `holder` (a run id) once `acquire` returns."""

    def __init__(self, output_dir: str, holder: str, kind: str = "ingest",
                 expiry_s: float = DEFAULT_EXPIRY_S, clock=None, adopt_own: bool = False):
        self.path = lease_path(output_dir)
        # A job's start step, retried by the runner, finds the lease its first attempt took
        # (same holder, maybe another worker): it takes it over instead of waiting for itself.
        self._adopt_own = adopt_own
        self.holder = holder
        self._store = store_for(output_dir)
        self._kind = kind
        self._expiry_s = expiry_s
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._token = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.taken_over: dict | None = None  # the dead holder this lease replaced, if any

    def _content(self, started_at: str | None = None) -> bytes:
        now = self._clock().isoformat()
        return json.dumps({
            "holder": self.holder, "kind": self._kind, "host": socket.gethostname(),
            "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
            "started_at": started_at or now, "heartbeat_at": now, "expiry_s": self._expiry_s,
            "nonce": secrets.token_hex(8)}, indent=2).encode()

    def try_acquire(self) -> dict | None:
        """Takes the lease if it is free or its holder is dead; returns None on success, else
        the live holder's content."""
        data, token = self._store.read(self.path)
        current = None
        if data:
            try:
                current = json.loads(data)
            except ValueError:
                current = {}
            own = self._adopt_own and current.get("holder") == self.holder
            if not own and not holder_is_dead(current, self._clock()):
                return current
        content = self._content()
        new_token = self._store.swap(self.path, content, token if data else None)
        if new_token is None:
            # Someone changed it between our read and our swap: look again.
            data, _ = self._store.read(self.path)
            return json.loads(data) if data else {"holder": "(changing hands)"}
        self._token = new_token
        self._started = json.loads(content)["started_at"]
        self.taken_over = current
        return None

    def acquire(self, wait_s: float = 0.0, heartbeat: bool = True) -> "Lease":
        """Takes the lease (waiting up to `wait_s` for a live holder to let go); `heartbeat`:
        refresh it from a thread of this process until `release` (else the caller renews it,
        with renew_held, within its expiry)."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                if heartbeat:
                    self._start_heartbeat()
                return self
            if time.monotonic() >= deadline:
                raise LeaseHeld(self.path, holder)
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def heartbeat(self) -> bool:
        """Refreshes heartbeat_at; False (and `lost`) when the lease was taken over."""
        with self._lock:
            if self._token is None or self.lost:
                return False
            token = self._store.swap(self.path, self._content(self._started), self._token)
            if token is None:
                self.lost = True
                return False
            self._token = token
            return True

    def _start_heartbeat(self) -> None:
        interval = heartbeat_interval_s(self._expiry_s)

        def beat():
            while not self._stop.wait(interval):
                if not self.heartbeat():
                    return
        self._thread = threading.Thread(target=beat, name="newsbeam-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._token is not None and not self.lost:
                self._store.swap(self.path, None, self._token)
            self._token = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def heartbeat_interval_s(expiry_s: float) -> float:
    """How often a holder refreshes a lease of `expiry_s`: often enough that a late refresh or
    two still finds it alive."""
    return max(0.5, expiry_s * _HEARTBEAT_SHARE)


def _held_by(store, path: str, holder: str):
    """(the lease's content, its version token) when `holder` holds it, else None."""
    data, token = store.read(path)
    try:
        current = json.loads(data) if data else None
    except ValueError:
        current = None
    if not current or current.get("holder") != holder:
        return None
    return current, token


def renew_held(output_dir: str, holder: str, clock=None) -> bool:
    """Refreshes heartbeat_at of the lease `holder` holds, from any process (a job's steps run
    on whichever worker has them); False, and nothing written, when someone else holds it now
    or no one does (it was taken over, or released)."""
    store = store_for(output_dir)
    path = lease_path(output_dir)
    held = _held_by(store, path, holder)
    if held is None:
        return False
    current, token = held
    now = (clock or (lambda: dt.datetime.now(dt.timezone.utc)))()
    renewed = {**current, "heartbeat_at": now.isoformat(), "host": socket.gethostname(),
               "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
               "nonce": secrets.token_hex(8)}
    return store.swap(path, json.dumps(renewed, indent=2).encode(), token) is not None


def release_held(output_dir: str, holder: str) -> bool:
    """Deletes the lease if `holder` still holds it, from any process (the one that took it
    may be another worker of the job); False when someone else holds it now."""
    store = store_for(output_dir)
    path = lease_path(output_dir)
    held = _held_by(store, path, holder)
    if held is None:
        return False
    return store.swap(path, None, held[1]) is not None


def verify_holder(output_dir: str, holder: str) -> None:
    """Raises LeaseLost unless `holder` holds the dataset's lease: the last check before a
    commit, from whichever worker runs it."""
    current = read_holder(output_dir)
    if not current or current.get("holder") != holder:
        raise LeaseLost(
            f"run {holder} no longer holds {lease_path(output_dir)} (now: "
            f"{(current or {}).get('holder')}); it was taken for dead, so it does not commit. "
            "Raise --lease_expiry_s if the run's host was only slow")
