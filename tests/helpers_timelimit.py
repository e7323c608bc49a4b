"""Module-level functions for tests/test_timelimit.py: the spawned child imports them by name."""

import os
import time


class HelperError(ValueError):
    """Raised inside the child; must reach the parent as itself."""


def add(a, b):
    return a + b


def pid():
    return os.getpid()


def sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


def fail(message):
    raise HelperError(message)


def die(code):
    os._exit(code)


def dispatch(name, *args):
    """Runs the helper called `name`: lets one worker (one spawned child) exercise them all."""
    return globals()[name](*args)


def module_files(names):
    """Where the child found each module: its file, or the error importing it raised."""
    import importlib
    found = {}
    for name in names:
        try:
            found[name] = importlib.import_module(name).__file__
        except Exception as error:  # a stray module may raise: report it, do not die
            found[name] = f"{type(error).__name__}: {error}"
    return found


def sys_path():
    import sys
    return list(sys.path)
