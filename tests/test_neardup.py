"""Near-identical copies: normalisation, shingles, MinHash, LSH, verification, the kept copy,
and the DropNearCopies composite (FnApiRunner)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.schemas.records import Article
from tests.conftest import SEEDS
from newsbeam.transforms import dedup
from newsbeam.transforms.dedup import (DUPLICATES, SIGNATURES, DropNearCopies, NearDupParams, band_keys,
                                       bucket_pairs, estimate_similarity, minhash, normalise_for_shingles,
                                       resolve_cluster, shingle_hashes, sign_article)
from newsbeam.transforms.text import clean_plain_text

NOW = dt.datetime(2022, 2, 17, 12, tzinfo=dt.timezone.utc)
PARAMS = NearDupParams()
REUTERS = clean_plain_text((SEEDS / "000_dac305c5b36f0b2f.txt").read_text())
ANADOLU = clean_plain_text((SEEDS / "004_732ed2892add5ac6.txt").read_text())


def article(article_id: str, text: str, **fields) -> Article:
    values = dict(article_id=article_id, source_uri=f"file:///{article_id}.txt", text=text,
                  word_count=len(text.split()), content_hash="h" + article_id,
                  ingested_at=NOW, date_source="ingested", run_id="run")
    values.update(fields)
    return Article(**values)


def similarity(a: str, b: str) -> tuple[float, float]:
    sa = shingle_hashes(normalise_for_shingles(a), 5)
    sb = shingle_hashes(normalise_for_shingles(b), 5)
    return estimate_similarity(minhash(sa, 128), sa.size, minhash(sb, 128), sb.size)


def test_normalisation_undoes_reprint_edits():
    original = ("The U.S. said inflation rose 5 per cent.\n\n"
                "Officials said \u201cno\u201d \u2014 twice.")
    reprint = ("WASHINGTON (Reuters) - The US said inflation rose 5 percent.\n\nBy Jane Miller\n\n"
               "Officials said \"no\" - twice.\n\nAlso Read | Markets fall on rate fears\n\n"
               "Copyright 2022 Example Media. All rights reserved.\n\n"
               "Reporting by Jane Miller; Editing by Tom Brown")
    assert normalise_for_shingles(original) == normalise_for_shingles(reprint)
    wrapped = "\n".join(textwrap.wrap(original.replace("\n\n", " "), 20))
    assert normalise_for_shingles(wrapped) == normalise_for_shingles(original)


def test_dateline_only_at_the_opening_and_footer_keys_drop_paragraphs():
    # The first two paragraphs may open with a dateline (a byline can come first); later ones
    # keep their words.
    text = "LONDON - Prices rose.\n\nMore.\n\nBERLIN - a later paragraph keeps its words."
    words = normalise_for_shingles(text)
    assert words[0] == "prices" and "berlin" in words
    footer = "Subscribe to our daily newsletter for more news from the region and beyond."
    keys = frozenset({dedup.paragraph_key(footer)})
    assert normalise_for_shingles(f"Body text here.\n\n{footer}", keys) == ["body", "text", "here"]


def test_shingles_are_stable_distinct_and_cover_short_texts():
    words = "a b c d e f a b c d e".split()
    hashes = shingle_hashes(words, 5)
    assert hashes.dtype == np.uint64 and hashes.size == 6  # 7 windows, one repeated
    assert np.array_equal(hashes, shingle_hashes(list(words), 5))
    assert shingle_hashes(["only", "three", "words"], 5).size == 1
    assert shingle_hashes([], 5).size == 0


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(1)
    universe = rng.integers(0, 2**63, size=3000, dtype=np.uint64)
    a, b = universe[:2000], universe[1000:3000]      # true Jaccard 1000/3000
    estimated = np.mean(minhash(a, 256) == minhash(b, 256))
    assert abs(estimated - 1 / 3) < 0.08
    assert np.array_equal(minhash(a, 128), minhash(a.copy(), 128))
    assert minhash(np.array([], dtype=np.uint64), 8).tolist() == [0xFFFFFFFF] * 8


def test_band_keys_collide_only_where_bands_agree():
    sig = np.arange(64, dtype=np.uint32)
    other = sig.copy()
    other[2:] += 1000  # only the first band (rows 0, 1) agrees
    keys_a, keys_b = band_keys(sig, 32, 2), band_keys(other, 32, 2)
    assert len(keys_a) == 32 and len(set(keys_a)) == 32
    assert [a == b for a, b in zip(keys_a, keys_b)] == [True] + [False] * 31


def test_verification_accepts_reprints_and_rejects_independent_coverage():
    paras = REUTERS.split("\n\n")
    trimmed = "\n\n".join(paras[: len(paras) // 2])
    jaccard, containment = similarity(REUTERS, trimmed)
    assert jaccard < 0.8 and containment > 0.9          # the baseline would miss it
    assert dedup.is_near_copy(jaccard, containment, PARAMS)
    extended = REUTERS + "\n\nA new paragraph with the latest developments from the border."
    assert dedup.is_near_copy(*similarity(REUTERS, extended), PARAMS)
    assert not dedup.is_near_copy(*similarity(REUTERS, ANADOLU), PARAMS)


def test_bucket_pairs_skip_stored_pairs_and_bound_big_buckets():
    assert bucket_pairs([("b", False), ("a", True), ("c", True)], 64) == [("a", "b"), ("b", "c")]
    members = [(f"m{i:04d}", False) for i in range(1000)]
    pairs = bucket_pairs(members, 64)
    assert len(pairs) < 10_000
    from newsbeam.transforms.components import components_of
    assert set(components_of(pairs).values()) == {"m0000"}


def signed(article_id, text=REUTERS, **fields):
    return sign_article(article(article_id, text, **fields), PARAMS)


def test_kept_copy_is_the_agency_original_then_earliest_then_longest():
    later = NOW + dt.timedelta(hours=1)
    agency = signed("z", publisher="Reuters", wire_sources=["Reuters"], published_at=later)
    outlet = signed("a", publisher="Daily Example", wire_sources=["Reuters"], published_at=NOW)
    assert resolve_cluster([outlet, agency])[0] == "z"
    # The agency's own copy need not credit itself: the other copies' credits count.
    own_site = signed("y", domain="reuters.com", published_at=later)
    assert resolve_cluster([outlet, own_site])[0] == "y"
    # An agency nobody credits is not preferred: the earliest copy is kept.
    assert resolve_cluster([signed("a", published_at=NOW), own_site])[0] == "a"
    early, late = signed("b", published_at=NOW), signed("a", published_at=later)
    assert resolve_cluster([late, early])[0] == "b"
    short = signed("a", text="\n\n".join(REUTERS.split("\n\n")[:3]))
    assert resolve_cluster([short, signed("b")])[0] == "b"
    # Stable tie-break: the same members in any order keep the same copy.
    members = [signed("c"), signed("b"), signed("d")]
    assert {resolve_cluster(members)[0], resolve_cluster(members[::-1])[0]} == {"b"}


def test_an_article_stored_earlier_is_kept_and_never_a_copy():
    stored = dedup.signed_from_index(dedup.signature_entry(signed("old"), "run0", NOW))
    kept, copies = resolve_cluster([signed("a", publisher="Reuters", wire_sources=["Reuters"]),
                                    stored])
    assert kept == "old" and [c[0] for c in copies] == ["a"]


def _reprint_articles():
    paras = REUTERS.split("\n\n")
    footer = ("Get our morning newsletter with the stories that matter, market data, the weather "
              "in your region, a crossword, and analysis from correspondents around the world, "
              "delivered to your inbox every weekday at six.")
    briefs = [article(f"brief{i}", f"Short note number {i} about {topic} in the city today.\n\n"
                      f"{footer}", domain="brief.example")
              for i, topic in enumerate(["traffic", "weather", "a concert", "the council"])]
    return [
        article("orig", REUTERS, publisher="Reuters", wire_sources=["Reuters"],
                published_at=NOW + dt.timedelta(hours=2)),
        article("trim", "\n\n".join(paras[: len(paras) * 2 // 3]), domain="a.example",
                published_at=NOW),
        article("wire", "WASHINGTON (Reuters) - " + REUTERS.replace("US ", "U.S. "),
                domain="b.example", title="A new headline", published_at=NOW),
        article("anadolu", ANADOLU, publisher="Anadolu Agency", published_at=NOW),
        *briefs,
    ]


def test_drop_near_copies_keeps_one_per_cluster_and_repoints_exact_copies():
    articles = _reprint_articles()
    exact_copy_of_trim = dedup.duplicate_of(
        article("trimcopy", articles[1].text), articles[1], 1.0, "exact")
    articles[1] = dataclasses.replace(articles[1], duplicate_count=1)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        near = (p | "Articles" >> beam.Create(articles)
                | DropNearCopies(p | "Exact" >> beam.Create([exact_copy_of_trim]),
                                 p | "Index" >> beam.Create([]), "run", NOW))
        assert_that(near["articles"] | beam.Map(lambda a: (a.article_id, a.duplicate_count)),
                    equal_to([("orig", 3), ("anadolu", 0)] + [(f"brief{i}", 0)
                                                               for i in range(4)]))
        assert_that(near[DUPLICATES] | beam.Map(lambda d: (d.source_uri.rsplit("/", 1)[1],
                                                           d.duplicate_of, d.method)),
                    equal_to([("trim.txt", "orig", "minhash"), ("wire.txt", "orig", "normalised"),
                              ("trimcopy.txt", "orig", "exact")]),
                    label="duplicates")
        assert_that(near[SIGNATURES] | beam.Map(lambda s: (s.article_id, len(s.signature))),
                    equal_to([("orig", 128), ("anadolu", 128)] + [(f"brief{i}", 128)
                                                                    for i in range(4)]),
                    label="signatures")


def test_drop_near_copies_finds_copies_of_indexed_articles():
    stored = dedup.signature_entry(signed("stored"), "run0", NOW)
    row = dataclasses.asdict(stored)  # what ReadAllFromParquet gives
    copy = article("copy", "LONDON (Reuters) - " + REUTERS)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        near = (p | "Articles" >> beam.Create([copy, article("other", ANADOLU)])
                | DropNearCopies(p | "Exact" >> beam.Create([]),
                                 p | "Index" >> beam.Create([row]), "run1", NOW))
        assert_that(near["articles"] | beam.Map(lambda a: a.article_id), equal_to(["other"]))
        assert_that(near[DUPLICATES] | beam.Map(lambda d: d.duplicate_of), equal_to(["stored"]),
                    label="duplicates")


def test_texts_that_are_all_footer_or_empty_never_match_each_other():
    # A publisher that repeats each of its stories under three URLs makes every paragraph
    # look like a footer; the footers are then ignored, not the whole text.
    first = "The council approved the new budget for schools on Monday evening after debate."
    second = "A storm closed the harbour and cancelled every ferry to the islands for two days."
    footers = frozenset(dedup.paragraph_key(p) for p in (first, second))
    signed_first = sign_article(article("a1", first), PARAMS, footers)
    signed_second = sign_article(article("a2", second), PARAMS, footers)
    assert signed_first.shingle_count > 0 and signed_second.shingle_count > 0
    assert signed_first.normalised_hash != signed_second.normalised_hash
    assert dedup.near_copy_edge(PARAMS)("a1", signed_first, "a2", signed_second) is None
    # Texts with nothing left to compare (only boilerplate) have no buckets and no edges.
    boilerplate = "Copyright 2022 Example Media. All rights reserved."
    empty_a = sign_article(article("e1", boilerplate), PARAMS)
    empty_b = sign_article(article("e2", boilerplate + "\n\nAll rights reserved."), PARAMS)
    assert empty_a.shingle_count == 0 and empty_a.normalised_hash == ""
    assert dedup.bucket_keys(empty_a, PARAMS) == []
    assert dedup.near_copy_edge(PARAMS)("e1", empty_a, "e2", empty_b) is None


def test_an_article_never_pairs_with_itself():
    # Stored in index/signatures by a run that failed before index/articles, and new again.
    assert bucket_pairs([("a", False), ("a", True), ("b", False)], 50) == \
        [("a", "b")]
