"""Outputs emitted from DoFn.finish_bundle, where no input element lends its window.

newsbeam's batch graph keeps everything in the global window, so that is where they go.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue


def in_global_window(output):
    """A value, or a TaggedOutput's value, as a WindowedValue in the global window."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, in_global_window(output.value))
    return WindowedValue(output, MIN_TIMESTAMP, [GlobalWindow()])
