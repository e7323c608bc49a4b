"""Connected components of a graph given as edges, in a fixed number of Beam stages.

Shared by both dedup levels (near-identical copies, same-story candidates). The algorithm is
Hash-to-Min (Rastogi et al., "Finding connected components in map-reduce in logarithmic rounds",
ICDE 2013): every node v holds a set C(v), at first itself and its neighbours; in each round v
sends C(v) to min C(v) and {min C(v)} to every member of C(v), and each node's new set is the
union of what it received. After about 2·log2(diameter) rounds the smallest node of each
component holds the whole component and every other node holds just that smallest node. No key
ever receives more than one component, so no step grows with the corpus.

Also here: scoring candidate pairs by joining each side's payload (two CoGroupByKeys), which
both levels use so that a bucket of candidates carries ids, not signatures or term vectors.
"""

from __future__ import annotations

from typing import Callable, Iterable

import apache_beam as beam

# Measured with `components_of`: a path (the worst shape) of 200 nodes in random id order
# converges in 9 rounds, of 1,000 in 12. Reprint clusters and story components are far smaller
# and denser. Should a component not converge, it stays split in parts: fewer merges, never
# wrong ones. Every round is a shuffle, so rounds are a fixed cost of each run.
DEFAULT_ROUNDS = 10


# --- Pure functions ------------------------------------------------------------------------------


def initial_sets(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for a, b in edges:
        sets.setdefault(a, {a}).add(b)
        sets.setdefault(b, {b}).add(a)
    return sets


def hash_to_min_messages(node: str, members: set[str]):
    """What `node` sends in one round: its whole set to its smallest member, and that smallest
    member to every member."""
    smallest = min(members)
    yield smallest, frozenset(members)
    for member in members:
        if member != smallest:
            yield member, frozenset((smallest,))


def components_of(edges: Iterable[tuple[str, str]], rounds: int = DEFAULT_ROUNDS) -> dict[str, str]:
    """node -> the smallest node of its component, computed the way the Beam composite does."""
    sets = initial_sets(edges)
    for _ in range(rounds):
        received: dict[str, set[str]] = {}
        for node, members in sets.items():
            for target, message in hash_to_min_messages(node, members):
                received.setdefault(target, set()).update(message)
        if received == sets:
            break
        sets = received
    return {node: min(members) for node, members in sets.items()}


# --- Composites ----------------------------------------------------------------------------------


def _round(keyed):
    node, members = keyed
    return hash_to_min_messages(node, set(members))


def _union(keyed):
    node, messages = keyed
    merged = set()
    for message in messages:
        merged.update(message)
    return node, frozenset(merged)


class ConnectedComponents(beam.PTransform):
    """(a, b) edges -> (node, component label) for every node that has an edge; the label is the
    smallest node id of the component. Nodes without edges do not appear."""

    def __init__(self, rounds: int = DEFAULT_ROUNDS):
        super().__init__()
        self._rounds = rounds

    def expand(self, edges):
        sets = (
            edges
            | "BothWays" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])])
            | "Neighbours" >> beam.GroupByKey()
            | "InitialSets" >> beam.MapTuple(
                lambda node, others: (node, frozenset((node, *others)))))
        for number in range(self._rounds):
            sets = (
                sets
                | f"Send{number}" >> beam.FlatMap(_round)
                | f"Receive{number}" >> beam.GroupByKey()
                | f"Union{number}" >> beam.Map(_union))
        return sets | "Label" >> beam.MapTuple(lambda node, members: (node, min(members)))


class _ScoreFn(beam.DoFn):
    def __init__(self, score: Callable):
        self._score = score

    def process(self, keyed):
        _, grouped = keyed
        payloads = list(grouped["payload"])
        if not payloads:
            return
        for first_id, first in grouped["pairs"]:
            result = self._score(first_id, first, payloads[0][0], payloads[0][1])
            if result is not None:
                yield result


class ScorePairs(beam.PTransform):
    """Candidate pairs (a, b) and payloads (id, payload) -> score(a, payload_a, b, payload_b)
    for each pair, dropping None. Each payload is shuffled once per pair it is part of, never
    copied into candidate buckets."""

    def __init__(self, payloads, score: Callable):
        super().__init__()
        self._payloads = payloads
        self._score = score

    def expand(self, pairs):
        keyed_payloads = self._payloads | "PayloadOnce" >> beam.Map(
            lambda kv: (kv[0], (kv[0], kv[1])))
        with_first = (
            {"pairs": pairs | "ByFirst" >> beam.Map(lambda p: (p[0], p[1])),
             "payload": keyed_payloads}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "ToSecond" >> beam.FlatMap(_to_second))
        return (
            {"pairs": with_first, "payload": keyed_payloads}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Score" >> beam.ParDo(_ScoreFn(self._score)))


def _to_second(keyed):
    first_id, grouped = keyed
    payloads = list(grouped["payload"])
    if not payloads:
        return
    first = payloads[0][1]
    for second_id in grouped["pairs"]:
        yield second_id, (first_id, first)
