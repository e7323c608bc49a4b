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
