"""Connected components: the in-memory reference and the Beam composite agree, in few rounds."""

from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.transforms.components import ConnectedComponents, ScorePairs, components_of


def test_components_of_labels_each_component_by_its_smallest_node():
    edges = [("b", "c"), ("c", "d"), ("x", "y"), ("a", "d")]
    assert components_of(edges) == {"a": "a", "b": "a", "c": "a", "d": "a", "x": "x", "y": "x"}


def test_a_long_chain_converges_within_the_fixed_rounds():
    # A path of 200 nodes in shuffled id order: the worst shape for label propagation.
    nodes = [f"n{i:03d}" for i in range(200)]
    random.Random(3).shuffle(nodes)
    edges = list(zip(nodes, nodes[1:]))
    labels = components_of(edges)
    assert set(labels.values()) == {min(nodes)}


def test_composite_matches_the_reference_on_a_random_graph():
    rng = random.Random(5)
    edges = [(f"v{rng.randrange(300):03d}", f"v{rng.randrange(300):03d}") for _ in range(220)]
    edges = [(a, b) for a, b in edges if a != b]
    expected = sorted(components_of(edges).items())
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        labels = p | beam.Create(edges) | ConnectedComponents()
        assert_that(labels, equal_to(expected))


def test_score_pairs_joins_both_payloads():
    payloads = [("a", 1), ("b", 10), ("c", 100)]
    pairs = [("a", "b"), ("b", "c"), ("a", "z")]  # z has no payload: no score
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        scored = (p | "Pairs" >> beam.Create(pairs)
                  | ScorePairs(p | "Payloads" >> beam.Create(payloads),
                               lambda a, pa, b, pb: (a, b, pa + pb) if pa + pb > 50 else None))
        assert_that(scored, equal_to([("b", "c", 110)]))
