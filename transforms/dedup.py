"""Deduplication against this run and against earlier runs.

What is here: exact identity. An article whose article_id (same text fingerprint under the same
canonical URL) is already in OUTPUT/index/ was stored by an earlier run: it is counted as
already ingested and not written again, which is what makes a re-run add no rows. Several copies
with one article_id in one run keep one article, the others become duplicates/ rows.

Then near-identical copies (DropNearCopies): the text is normalised for the edits reprints make
(datelines, bylines, sign-offs, "Also Read" and copyright lines, US/U.S., per cent/percent,
quotes, dashes, wraps), paragraphs that one publisher repeats under many articles (newsletter
and paywall footers) are left out, and the rest becomes word 5-shingles. A MinHash signature
(numpy, vectorised) and LSH bands give candidate pairs; a pair is an edge when the estimated
Jaccard similarity is high OR the shorter text is contained in the longer (a trimmed copy);
clusters are connected components (transforms/components.py). Signatures of stored articles
persist in OUTPUT/index/signatures, so later runs find copies of earlier runs' articles.
Same-story linking (different text, same event) is transforms/stories.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
import unicodedata
import zlib

import apache_beam as beam
import numpy as np

from newsbeam.schemas.records import Article, Duplicate, SignatureIndexEntry
from newsbeam.transforms import metrics
from newsbeam.transforms.components import ConnectedComponents, ScorePairs
from newsbeam.transforms.text import WIRE_AGENCIES, is_boilerplate

DUPLICATES = "duplicates"
ALREADY_INGESTED = "already_ingested"

_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


# --- Pure functions ------------------------------------------------------------------------------


def keep_order(article: Article) -> tuple:
    """Sort key of copies: the first is kept. Earliest published, then the longest text, then
    the source path, so the choice does not depend on the order the runner delivers them."""
    return (article.published_at or _FAR_FUTURE, -article.word_count, article.source_uri,
            article.source_id or "")


def duplicate_of(copy: Article, kept: Article, similarity: float, method: str) -> Duplicate:
    return Duplicate(duplicate_of=kept.article_id, source_uri=copy.source_uri,
                     similarity=similarity, method=method, ingested_at=copy.ingested_at,
                     run_id=copy.run_id, source_id=copy.source_id, url=copy.url,
                     publisher=copy.publisher, title=copy.title,
                     published_at=copy.published_at, article_id=copy.article_id)


def resolve_exact_copies(article_id: str, new: list[Article], already_indexed: bool,
                         stored_by_this_run: str | None = None):
    """What becomes of the new articles that share `article_id`: (kept article or None,
    duplicates, number already ingested). stored_by_this_run: the id of the article an earlier
    batch of this very run stored for it (transforms/batches.py): the copies are its
    duplicates, as they would be in one unbatched run."""
    if stored_by_this_run is not None:
        stored = dataclasses.replace(new[0], article_id=stored_by_this_run)
        return None, [duplicate_of(copy, stored, 1.0, "exact") for copy in
                      sorted(new, key=keep_order)], 0
    if already_indexed:
        return None, [], len(new)
    copies = sorted(new, key=keep_order)
    kept, rest = copies[0], copies[1:]
    duplicates = [duplicate_of(copy, kept, 1.0, "exact") for copy in rest]
    return dataclasses.replace(kept, duplicate_count=len(rest)), duplicates, 0


# --- DoFn and composite --------------------------------------------------------------------------


class _ResolveFn(beam.DoFn):
    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, keyed):
        article_id, grouped = keyed
        new, index = list(grouped["new"]), list(grouped["index"])
        if not new:
            return
        # Stored by an earlier batch of this run, and by no earlier run: its copies here are
        # duplicates of what that batch stored.
        same_run = [stored for stored in index if stored is not None]
        stored_by_this_run = same_run[0] if index and len(same_run) == len(index) else None
        kept, duplicates, skipped = resolve_exact_copies(article_id, new, bool(index),
                                                         stored_by_this_run)
        if kept is not None:
            yield kept
        for duplicate in duplicates:
            yield beam.pvalue.TaggedOutput(DUPLICATES, duplicate)
        for _ in range(skipped):
            yield beam.pvalue.TaggedOutput(ALREADY_INGESTED, article_id)


class DropKnownAndExactCopies(beam.PTransform):
    """(Articles, article ids in the index) -> Articles (main), Duplicates (DUPLICATES) and the
    ids of articles already ingested by earlier runs (ALREADY_INGESTED). An index element is an
    id, or (id, the article id its copies are duplicates of when an earlier batch of this run
    stored it, else None)."""

    def __init__(self, indexed_ids):
        super().__init__()
        self._indexed_ids = indexed_ids

    def expand(self, articles):
        keyed_new = articles | "KeyById" >> beam.Map(lambda a: (a.article_id, a))
        keyed_index = self._indexed_ids | "KeyIndex" >> beam.Map(
            lambda i: (i, None) if isinstance(i, str) else i)
        return (
            {"new": keyed_new, "index": keyed_index}
            | "Join" >> beam.CoGroupByKey()
            | "Resolve" >> beam.ParDo(_ResolveFn()).with_outputs(
                DUPLICATES, ALREADY_INGESTED, main="articles"))


# --- Near-identical copies: constants ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NearDupParams:
    """How near-identical copies are found. The defaults are tuned on bench/bench_reprints.py."""
    shingle_words: int = 5
    num_perm: int = 128
    # LSH: `bands` bands of `band_rows` signature values. Two rows a band find pairs down to a
    # Jaccard of about 0.25 (a copy cut to a third of the original): P(candidate) =
    # 1 - (1 - J**band_rows)**bands.
    bands: int = 32
    band_rows: int = 2
    # An edge: estimated Jaccard >= min_jaccard, or the shorter text's shingles are contained in
    # the longer's at >= min_containment (a trimmed or extended copy).
    min_jaccard: float = 0.5
    min_containment: float = 0.8
    # A paragraph one publisher repeats under at least this many articles of the run is a
    # footer: left out of the shingles.
    footer_min_articles: int = 3
    # Buckets larger than this pair each member with the first few members only (and its
    # neighbour), which keeps components intact without all n² pairs.
    max_bucket_pairs_members: int = 64
    seed: int = 20220216


NEAR_DUP_METHOD = "minhash"
NORMALISED_METHOD = "normalised"

# Where agencies publish: a copy whose publisher or domain is the credited agency is the original.
AGENCY_DOMAINS = {
    "Reuters": ("reuters.com",), "Associated Press": ("apnews.com", "ap.org"),
    "AFP": ("afp.com",), "Anadolu Agency": ("aa.com.tr",), "dpa": ("dpa.com",),
    "EFE": ("efe.com",), "ANSA": ("ansa.it",), "Kyodo": ("kyodonews.net",),
    "Yonhap": ("yna.co.kr",), "Xinhua": ("xinhuanet.com", "news.cn"), "TASS": ("tass.com",),
    "Interfax": ("interfax.com",), "PTI": ("ptinews.com",), "IANS": ("ians.in",),
    "ANI": ("aninews.in",), "UPI": ("upi.com",), "Bloomberg": ("bloomberg.com",),
}

_AGENCY_NAMES = "|".join(sorted((re.escape(alias) for aliases in WIRE_AGENCIES.values()
                                 for alias in aliases), key=len, reverse=True))
# "WASHINGTON (Reuters) -", "ANKARA (AA) –", "Moscow, Feb 16 (AFP):", "LONDON —", "(AP) -".
_DATELINE = re.compile(
    rf"^(?:[A-Z][\w.'/-]*(?:[ ,]+[\w.'/-]+){{0,5}}\s*)?\((?:{_AGENCY_NAMES})\)\s*[-–—:]\s*"
    rf"|^[A-Z][A-Z.'-]{{2,}}(?:[ ,]+[A-Z][A-Za-z.'-]*){{0,3}}(?:,\s*\w+\.?\s+\d{{1,2}})?"
    rf"\s*[-–—:]\s+")
_BYLINE = re.compile(r"^(?:by|von|par|por)\s+[\w.' -]{2,60}(?:,\s*[\w.' -]{2,60})?$",
                     re.IGNORECASE)
_SIGNOFF = re.compile(r"^\(?(?:(?:additional\s+)?reporting|writing|editing|compiled|"
                      r"edited)\s+by\b", re.IGNORECASE)
_COPY_EDITS = [
    (re.compile(r"\bu\.\s?s\.(?:\s?a\.)?|\busa\b"), "us"),
    (re.compile(r"\bu\.\s?k\.|\bunited kingdom\b"), "uk"),
    (re.compile(r"\bper\s+cent\b|\bpct\b|%"), " percent "),
    (re.compile(r"['’`]"), ""),
]
_WORD = re.compile(r"\w+")


# --- Near-identical copies: pure functions -------------------------------------------------------


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def paragraph_key(paragraph: str) -> str:
    """A short key of a paragraph that ignores case, spacing and punctuation."""
    words = " ".join(_WORD.findall(paragraph.casefold()))
    return hashlib.blake2b(words.encode("utf-8"), digest_size=8).hexdigest()


def publisher_key(article) -> str | None:
    return article.domain or article.publisher or None


def normalise_for_shingles(text: str, footer_keys: frozenset = frozenset()) -> list[str]:
    """The words of `text` that reprints of one article share: bylines, sign-offs, boilerplate
    lines and the publisher's footers (`footer_keys`, paragraph_key values) dropped, the agency
    dateline cut from the opening, then case, Unicode form, quotes and dashes folded and the
    usual copy edits (U.S. -> us, per cent -> percent) undone. Hard wraps and spacing do not
    matter: the result is a list of words."""
    kept = []
    for number, paragraph in enumerate(paragraphs_of(text)):
        paragraph = " ".join(paragraph.split())
        if number < 2:
            paragraph = _DATELINE.sub("", paragraph, count=1)
        if (not paragraph or is_boilerplate(paragraph) or _SIGNOFF.match(paragraph)
                or (len(paragraph) <= 80 and _BYLINE.match(paragraph))
                or paragraph_key(paragraph) in footer_keys):
            continue
        kept.append(paragraph)
    folded = unicodedata.normalize("NFKC", "\n".join(kept)).casefold()
    for pattern, replacement in _COPY_EDITS:
        folded = pattern.sub(replacement, folded)
    return _WORD.findall(folded)


def word_hashes(words: list[str]) -> np.ndarray:
    """A stable 32-bit hash of every word (crc32: the same in every process, unlike hash())."""
    return np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64,
                       count=len(words))


@functools.lru_cache(maxsize=16)
def _odd_constants(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def shingle_hashes(words: list[str], size: int, seed: int = NearDupParams.seed) -> np.ndarray:
    """The distinct 64-bit hashes of the word `size`-shingles (a text shorter than `size` words
    is one shingle). Vectorised: a shingle's hash is a sum of its word hashes times per-position
    odd constants, modulo 2**64."""
    hashes = word_hashes(words)
    if hashes.size == 0:
        return hashes
    width = min(size, hashes.size)
    count = hashes.size - width + 1
    weights = _odd_constants(seed, width)
    combined = np.zeros(count, dtype=np.uint64)
    for position in range(width):
        combined += hashes[position:position + count] * weights[position]
    return np.unique(combined)


def minhash(shingles: np.ndarray, num_perm: int, seed: int = NearDupParams.seed) -> np.ndarray:
    """MinHash signature (uint32, `num_perm` values) of a set of 64-bit shingle hashes: for each
    of `num_perm` multiply-shift hash functions h(x) = (a·x + b) mod 2**64 >> 32, the smallest
    value over the set. An empty set gets all 0xffffffff."""
    if shingles.size == 0:
        return np.full(num_perm, 0xFFFFFFFF, dtype=np.uint32)
    multipliers = _odd_constants(seed + 1, num_perm)
    offsets = _odd_constants(seed + 2, num_perm)
    values = shingles[:, None] * multipliers[None, :] + offsets[None, :]
    return (values.min(axis=0) >> np.uint64(32)).astype(np.uint32)


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[str]:
    """One LSH bucket key per band: the band number and a hash of its rows."""
    keys = []
    for band in range(bands):
        rows_bytes = signature[band * rows:(band + 1) * rows].tobytes()
        keys.append(f"{band}:{hashlib.blake2b(rows_bytes, digest_size=8).hexdigest()}")
    return keys


def estimate_similarity(signature_a: np.ndarray, count_a: int, signature_b: np.ndarray,
                        count_b: int) -> tuple[float, float]:
    """(estimated Jaccard, estimated containment of the smaller shingle set in the larger)."""
    jaccard = float(np.mean(signature_a == signature_b))
    if min(count_a, count_b) == 0:
        return jaccard, 0.0
    intersection = jaccard / (1.0 + jaccard) * (count_a + count_b)
    return jaccard, min(1.0, intersection / min(count_a, count_b))


def is_near_copy(jaccard: float, containment: float, params: NearDupParams) -> bool:
    return jaccard >= params.min_jaccard or containment >= params.min_containment


def is_from_agency(article, agencies: set[str]) -> bool:
    """Whether the article was published by one of `agencies` (its publisher names it, or its
    domain is the agency's)."""
    publisher = (article.publisher or "").casefold()
    domain = (article.domain or "").casefold()
    for agency in agencies:
        if publisher and any(alias.casefold() == publisher or
                             (len(alias) > 3 and alias.casefold() in publisher)
                             for alias in WIRE_AGENCIES.get(agency, (agency,))):
            return True
        if domain and any(domain == d or domain.endswith("." + d)
                          for d in AGENCY_DOMAINS.get(agency, ())):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Signed:
    """What clustering needs of one article (new in this run, or from the index)."""
    article_id: str
    signature: bytes          # uint32 values
    shingle_count: int
    normalised_hash: str
    indexed: bool
    published_at: dt.datetime | None = None
    word_count: int = 0
    source_uri: str = ""
    source_id: str = ""
    wire_sources: tuple = ()
    from_agency_of: tuple = ()   # the agencies this article's publisher or domain is
    duplicate_count: int = 0     # exact copies dropped already

    def values(self) -> np.ndarray:
        return np.frombuffer(self.signature, dtype=np.uint32)


def sign_article(article: Article, params: NearDupParams,
                 footer_keys: frozenset = frozenset()) -> Signed:
    words = normalise_for_shingles(article.text, footer_keys)
    if len(words) < params.shingle_words and footer_keys:
        # Nothing but "footers" left: the publisher repeated the whole text under several URLs.
        # Those are copies of one another, not articles that merely share a footer.
        words = normalise_for_shingles(article.text)
    shingles = shingle_hashes(words, params.shingle_words, params.seed)
    if shingles.size == 0:
        # Too short to compare: an empty signature would match every other empty one.
        words = []
    return Signed(
        article_id=article.article_id,
        signature=minhash(shingles, params.num_perm, params.seed).tobytes(),
        shingle_count=int(shingles.size),
        normalised_hash=hashlib.blake2b(" ".join(words).encode("utf-8"),
                                        digest_size=16).hexdigest() if words else "",
        indexed=False, published_at=article.published_at, word_count=article.word_count,
        source_uri=article.source_uri, source_id=article.source_id or "",
        wire_sources=tuple(article.wire_sources), duplicate_count=article.duplicate_count,
        from_agency_of=tuple(sorted(a for a in WIRE_AGENCIES if is_from_agency(article, {a}))))


def signed_from_index(entry) -> Signed:
    """An index row (dict or SignatureIndexEntry) as a Signed of an already stored article."""
    row = entry if isinstance(entry, dict) else dataclasses.asdict(entry)
    return Signed(article_id=row["article_id"],
                  signature=np.asarray(row["signature"], dtype=np.uint32).tobytes(),
                  shingle_count=row["shingle_count"], normalised_hash="", indexed=True,
                  published_at=row.get("published_at"))


def signature_entry(signed: Signed, run_id: str, ingested_at: dt.datetime) -> SignatureIndexEntry:
    return SignatureIndexEntry(article_id=signed.article_id,
                               signature=[int(v) for v in signed.values()],
                               shingle_count=signed.shingle_count, run_id=run_id,
                               ingested_at=ingested_at, published_at=signed.published_at)


def bucket_keys(signed: Signed, params: NearDupParams) -> list[str]:
    """The LSH buckets of an article (one per band) and its normalised-text bucket. An article
    too short to shingle is in none: its signature says nothing about its text."""
    if signed.shingle_count == 0:
        return []
    keys = band_keys(signed.values(), params.bands, params.band_rows)
    if signed.normalised_hash:
        keys.append(f"n:{signed.normalised_hash}")
    return keys


def bucket_pairs(members: list[tuple[str, bool]], max_members: int) -> list[tuple[str, str]]:
    """Candidate pairs (smaller id first) of one LSH bucket of (article_id, indexed). Pairs of
    two stored articles are left out (both were kept already). A bucket of more than
    `max_members` pairs each member with the first few and with its neighbour: enough to
    connect the component, far fewer than n² pairs."""
    members = sorted(set(members))
    if len(members) <= max_members:
        candidates = ((members[i], members[j]) for i in range(len(members))
                      for j in range(i + 1, len(members)))
    else:
        anchors = members[:8]
        candidates = [(a, m) for a in anchors for m in members if a < m]
        candidates += list(zip(members, members[1:]))
    # An article both new and indexed (a run that committed its signatures but not its
    # articles) must not pair with itself.
    return sorted({(a[0], b[0]) for a, b in candidates
                   if not (a[1] and b[1]) and a[0] != b[0]})


def near_copy_edge(params: NearDupParams):
    """The scoring function of candidate pairs: (a, b, similarity) when they are near copies."""
    def score(id_a: str, a: Signed, id_b: str, b: Signed):
        if a.shingle_count == 0 or b.shingle_count == 0:
            return None
        if a.normalised_hash and a.normalised_hash == b.normalised_hash:
            return id_a, id_b, 1.0
        jaccard, containment = estimate_similarity(a.values(), a.shingle_count, b.values(),
                                                   b.shingle_count)
        if is_near_copy(jaccard, containment, params):
            return id_a, id_b, max(jaccard, containment)
        return None
    return score


def near_keep_order(signed: Signed, cluster_agencies: set[str]) -> tuple:
    """Sort key of a cluster's members: the first is kept. An article an earlier run stored
    first (it cannot be taken back); then the original agency's own copy when the texts credit
    one; then the earliest published; then the most complete; then a stable tie-break."""
    return (not signed.indexed, not (set(signed.from_agency_of) & cluster_agencies),
            signed.published_at or _FAR_FUTURE, -signed.shingle_count, -signed.word_count,
            signed.source_uri, signed.source_id, signed.article_id)


def resolve_cluster(members: list[Signed]) -> tuple[str, list[tuple[str, float, str]]]:
    """(kept article_id, [(copy article_id, similarity to the kept one, method)]). Articles
    stored by earlier runs are never copies: only new articles are. Components are transitive
    (a story re-issued three times, each version extending the last, is one cluster), so a
    copy's similarity to the kept article can be below the edge thresholds."""
    agencies = {agency for m in members for agency in m.wire_sources}
    ordered = sorted(members, key=lambda m: near_keep_order(m, agencies))
    kept = ordered[0]
    copies = []
    for member in ordered[1:]:
        if member.indexed:
            continue
        if kept.normalised_hash and member.normalised_hash == kept.normalised_hash:
            copies.append((member.article_id, 1.0, NORMALISED_METHOD))
            continue
        jaccard, containment = estimate_similarity(kept.values(), kept.shingle_count,
                                                   member.values(), member.shingle_count)
        copies.append((member.article_id, round(max(jaccard, containment), 4), NEAR_DUP_METHOD))
    return kept.article_id, copies


# --- Near-identical copies: DoFns and composite --------------------------------------------------

SIGNATURES = "signatures"
_MOVED = "moved"


def _publisher_paragraphs(article: Article):
    publisher = publisher_key(article)
    if publisher is None:
        return []
    return sorted({(publisher, paragraph_key(p)) for p in paragraphs_of(article.text)
                   if len(p) >= 40})


class _SignFn(beam.DoFn):
    def __init__(self, params: NearDupParams):
        self._params = params

    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, article: Article, footers):
        publisher = publisher_key(article)
        keys = footers.get(publisher, frozenset()) if publisher else frozenset()
        yield sign_article(article, self._params, keys)


class _ResolveClusterFn(beam.DoFn):
    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, keyed):
        _, members = keyed
        members = list(members)
        kept_id, copies = resolve_cluster(members)
        exact_copies = {m.article_id: m.duplicate_count for m in members}
        for copy_id, similarity, method in copies:
            yield copy_id, ("copy_of", kept_id, similarity, method)
        if copies:
            yield kept_id, ("kept", sum(1 + exact_copies[c[0]] for c in copies))


class _ApplyFn(beam.DoFn):
    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, keyed):
        _, grouped = keyed
        articles = list(grouped["article"])
        if not articles:
            return
        article = articles[0]
        verdicts = list(grouped["verdict"])
        copy_of = [v for v in verdicts if v[0] == "copy_of"]
        if copy_of:
            _, kept_id, similarity, method = copy_of[0]
            yield beam.pvalue.TaggedOutput(
                DUPLICATES, dataclasses.replace(duplicate_of(article, article, similarity, method),
                                                duplicate_of=kept_id))
            yield beam.pvalue.TaggedOutput(_MOVED, (article.article_id, kept_id))
            return
        added = sum(v[1] for v in verdicts if v[0] == "kept")
        yield dataclasses.replace(article, duplicate_count=article.duplicate_count + added)


def _repoint(keyed):
    """Exact copies of an article that turned out to be a near copy itself now point to the
    article that was kept."""
    _, grouped = keyed
    moved_to = list(grouped["moved_to"])
    for duplicate in grouped["duplicates"]:
        yield dataclasses.replace(duplicate, duplicate_of=moved_to[0]) if moved_to else duplicate


def _group_footers(keyed):
    publisher, keys = keyed
    return publisher, frozenset(keys)


class DropNearCopies(beam.PTransform):
    """(Articles, the exact copies dropped before, signature index rows of earlier runs) ->
    Articles (main; a kept one's duplicate_count counts its near copies and theirs), every
    Duplicate (DUPLICATES: the near copies, and the exact ones, re-pointed when the article
    they copied is itself a near copy) and the kept articles' signatures as SignatureIndexEntry
    (SIGNATURES), for OUTPUT/index/signatures."""

    def __init__(self, exact_duplicates, indexed_signatures, run_id: str,
                 ingested_at: dt.datetime, params: NearDupParams = NearDupParams(),
                 bounded_index: bool = False):
        """bounded_index: stored signatures that share no bucket with this run's articles are
        dropped before the shuffle (they cannot pair with any); the run's bucket keys are a
        side input, so this is for runs of bounded size (a batch of a batched run)."""
        super().__init__()
        self._exact_duplicates = exact_duplicates
        self._indexed = indexed_signatures
        self._run_id = run_id
        self._ingested_at = ingested_at
        self._params = params
        self._bounded_index = bounded_index

    def expand(self, articles):
        params = self._params
        timed = metrics.timed(metrics.STAGE_DEDUP)
        footers = (
            articles
            | "PublisherParagraphs" >> beam.FlatMap(timed(_publisher_paragraphs))
            | "CountParagraphs" >> beam.combiners.Count.PerElement()
            | "Repeated" >> beam.Filter(lambda kv: kv[1] >= params.footer_min_articles)
            | "ByPublisher" >> beam.Map(lambda kv: kv[0])
            | "GroupFooters" >> beam.GroupByKey()
            | "FooterSets" >> beam.Map(_group_footers))
        signed_new = articles | "Sign" >> beam.ParDo(_SignFn(params),
                                                     footers=beam.pvalue.AsDict(footers))
        signed_old = self._indexed | "FromIndex" >> beam.Map(signed_from_index)
        if self._bounded_index:
            new_keys = (
                signed_new
                | "NewBucketKeys" >> beam.FlatMap(timed(lambda s: bucket_keys(s, params)))
                | "KeySet" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn()))
            signed_old = signed_old | "SharesABucket" >> beam.Filter(
                timed(lambda s, keys: not keys.isdisjoint(bucket_keys(s, params))),
                keys=beam.pvalue.AsSingleton(new_keys))
        signed = (signed_new, signed_old) | "AllSigned" >> beam.Flatten()
        payloads = signed | "ById" >> beam.Map(lambda s: (s.article_id, s))
        pairs = (
            signed
            | "BandKeys" >> beam.FlatMap(timed(lambda s: [
                (key, (s.article_id, s.indexed)) for key in bucket_keys(s, params)]))
            | "Buckets" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.FlatMap(timed(
                lambda kv: bucket_pairs(list(kv[1]), params.max_bucket_pairs_members)))
            | "DistinctPairs" >> beam.Distinct())
        edges = pairs | "Verify" >> ScorePairs(payloads, timed(near_copy_edge(params)))
        labels = (edges | "EdgeEnds" >> beam.Map(lambda e: (e[0], e[1]))
                  | "Components" >> ConnectedComponents())
        verdicts = (
            {"label": labels, "signed": payloads}
            | "JoinLabels" >> beam.CoGroupByKey()
            | "ByCluster" >> beam.FlatMap(
                lambda kv: [(label, s) for label in kv[1]["label"] for s in kv[1]["signed"]])
            | "Clusters" >> beam.GroupByKey()
            | "ResolveClusters" >> beam.ParDo(_ResolveClusterFn()))
        applied = (
            {"article": articles | "KeyArticles" >> beam.Map(lambda a: (a.article_id, a)),
             "verdict": verdicts}
            | "JoinVerdicts" >> beam.CoGroupByKey()
            | "Apply" >> beam.ParDo(_ApplyFn()).with_outputs(DUPLICATES, _MOVED,
                                                              main="articles"))
        exact = (
            {"duplicates": self._exact_duplicates | "KeyExact" >> beam.Map(
                lambda d: (d.duplicate_of, d)), "moved_to": applied[_MOVED]}
            | "JoinMoved" >> beam.CoGroupByKey()
            | "Repoint" >> beam.FlatMap(_repoint))
        duplicates = (applied[DUPLICATES], exact) | "AllDuplicates" >> beam.Flatten()
        kept_ids = applied.articles | "KeptIds" >> beam.Map(lambda a: (a.article_id, None))
        signatures = (
            {"kept": kept_ids, "signed": signed_new | "KeySigned" >> beam.Map(
                lambda s: (s.article_id, s))}
            | "JoinKeptSigned" >> beam.CoGroupByKey()
            | "IndexEntries" >> beam.FlatMap(
                lambda kv, run_id, at: [signature_entry(s, run_id, at)
                                        for s in kv[1]["signed"] if kv[1]["kept"]],
                self._run_id, self._ingested_at))
        return {"articles": applied.articles, DUPLICATES: duplicates,
                SIGNATURES: signatures}
