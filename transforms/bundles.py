"""Outputs emitted for another element than the one being processed, or from
DoFn.finish_bundle, where no input element lends its window: they are given their own input's
timestamp and window (`in_window`; in the batch graph that is the global window, in the stream
a fixed window, which a wrong timestamp would send to another, or a long-closed, window).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue


def in_window(output, timestamp, window):
    """A value, or a TaggedOutput's value, as a WindowedValue with this timestamp and window."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, in_window(output.value, timestamp, window))
    return WindowedValue(output, timestamp, [window])
