"""One copy of a model per worker process, whatever the number of DoFn instances and threads
that use it: Beam's `shared.Shared` needs an object it can keep a weak reference to, which a
spaCy pipeline or a numpy model is not always; this is that holder, for every stage."""

from __future__ import annotations

from typing import Callable

from apache_beam.utils import shared


class _Holder:
    def __init__(self, model):
        self.model = model


class SharedModel:
    """`acquire(load, tag)`: the model `load()` made, loaded once per process and `tag`."""

    def __init__(self):
        self._shared = shared.Shared()

    def acquire(self, load: Callable[[], object], tag: str):
        return self._shared.acquire(lambda: _Holder(load()), tag=tag).model
