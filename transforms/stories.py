"""Same-story linking: articles about one event, written independently, share a story_id.

Each article (title twice, then text) becomes a TF-IDF vector over content words, with IDF from
this run's articles plus the stories kept in OUTPUT/index/stories. When the entity stage found
names (people, places, organisations, events), their words form a second TF-IDF part, normalised
apart: two articles with entities are compared half by their words and half by their names
(on story-pairs-dev this cuts false positives that share topic words but not actors, where
adding the names to the words did not). Candidates are blocked by a time window and shared salient terms (an
article's highest-weighted terms that at least two documents use; a pair must share
`min_shared_terms` of them, which keeps the pairs per article bounded); a candidate pair is an edge
when the cosine of their vectors (times `same_source_factor` when one site published both: its
house vocabulary is shared whatever the event) reaches `link_threshold`. An article without a
publication date is compared with articles of any time: its moment is only when it was
ingested, which says nothing of when it was written. Edges make components
(transforms/components.py), and inside a component articles join stories greedily in time
order: an article joins the story whose lead (its earliest article) is most similar to it, if
that similarity reaches the threshold and the lead is within the window; else it leads a new
story. Comparing with the lead, not with any member, is the guard against chaining: a generic
article that resembles two stories does not merge them.

Across runs, each story's lead terms persist in OUTPUT/index/stories; a later run's article that
joins such a story gets its story_id, and stories/ gets a new row for it (same story_id, later
`updated_at`, cumulative member_count): the latest row per story_id is current.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path

import apache_beam as beam

from newsbeam.schemas.records import Article, Story, StoryIndexEntry, TermWeight
from newsbeam.transforms import metrics
from newsbeam.transforms.components import ConnectedComponents, ScorePairs

STORIES = "stories"
STORY_INDEX = "story_index"
# Document frequencies of terms in general English news (bench/make_story_background.py): added
# to the run's own, so that a run of a few articles still knows which words are common.
BACKGROUND_PATH = Path(__file__).resolve().parent / "data" / "story_background.json.gz"
# Names the shipped table in a graph: each worker resolves it against its own installed package
# (the launcher's path need not exist on a Dataflow worker).
SHIPPED_BACKGROUND = "shipped"


@dataclasses.dataclass(frozen=True)
class StoryParams:
    """How stories are formed. Defaults tuned on bench/bench_stories.py (story-pairs-dev)."""
    window_hours: float = 72.0
    link_threshold: float = 0.24
    salient_terms: int = 10
    # A term more than this share of the documents use is not salient (it blocks nothing).
    max_df_share: float = 0.05
    max_bucket_members: int = 100
    # Two articles are a candidate pair when they share this many salient terms in the window.
    min_shared_terms: int = 2
    index_terms: int = 200
    # Terms of a vector compared when scoring candidate pairs: the highest-weighted ones carry
    # nearly all of the cosine, and candidate pairs carry both vectors through a shuffle.
    scored_terms: int = 200
    top_terms: int = 10
    # Share of the similarity that comes from the entity names two articles have in common
    # (when both have entities); the rest is the cosine of their words.
    entity_share: float = 0.5
    # Two articles of one site share its house vocabulary whatever the event (datelines, the
    # station's call sign, the local places it covers, boilerplate the extractor left): their
    # similarity is multiplied by this before it is compared with the threshold.
    # 0.6: the best of 1.0 ... 0.5 in steps of 0.1 on story-pairs-dev and -multi-dev pooled
    # (cross-validated F1 0.663 -> 0.711, pairwise; see the note in bench/bench_stories.py).
    same_source_factor: float = 0.6


_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom why will with would you your yours yourself yourselves said says say told according new
one two three four five six seven eight nine ten first last year years month months week weeks
day days time times monday tuesday wednesday thursday friday saturday sunday today yesterday
tomorrow percent per cent mr mrs ms dr may might must shall many much even still well back like
get got make made use used going go went come came take took see seen know known want wanted
including include includes according added adding around another however since though although
whether within without across among told tell reported reporting report reports news
""".split())
_WORD = re.compile(r"[^\W\d_]{3,}")
# Entity labels that name what a story is about (numeric ones, kept on request, do not).
STORY_ENTITY_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT"})
# Marks a term that comes from an entity name: it is counted, weighed and normalised apart from
# the article's words.
ENTITY_MARK = "@"


# --- Pure functions ------------------------------------------------------------------------------


def stem(word: str) -> str:
    """A light plural fold: 'troops' -> 'troop', 'claims' -> 'claim'; not 'press', 'us'."""
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_terms(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS]


def story_term_counts(title: str | None, text: str, entities=()) -> Counter:
    """The term counts an article is compared by: the title counts twice (it names the event),
    then the text; and apart from those (marked terms), the words of the names of its people,
    places, organisations and events, once per mention, when the entity stage found any."""
    counts = Counter(content_terms(text))
    for term in content_terms(title or ""):
        counts[term] += 2
    for entity in entities:
        if entity.label in STORY_ENTITY_LABELS:
            for term in content_terms(entity.text):
                counts[ENTITY_MARK + term] += entity.count
    return counts


def is_entity_term(term: str) -> bool:
    return term.startswith(ENTITY_MARK)


def word_of(term: str) -> str:
    """The word a (possibly entity-marked) term stands for."""
    return term[len(ENTITY_MARK):] if is_entity_term(term) else term


def idf(document_frequency: int, documents: int) -> float:
    """Smoothed inverse document frequency (a term in every document still weighs 1)."""
    return math.log((1 + documents) / (1 + document_frequency)) + 1.0


def tfidf_vector(counts: dict[str, float], df: dict[str, int], documents: int,
                 entity_share: float = 0.5) -> dict[str, float]:
    """Sublinear TF times IDF, L2-normalised. A term absent from `df` is in one document.

    Words and entity terms are normalised apart and scaled by the square roots of 1 -
    `entity_share` and `entity_share`: the cosine of two articles that both have entities is
    then that mix of their word cosine and their entity cosine. An article without entities
    is its words alone, scaled back to length 1."""
    parts: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for term, count in counts.items():
        if count > 0:
            parts[is_entity_term(term)][term] = ((1.0 + math.log(count))
                                                 * idf(df.get(term, 1), documents))
    share = {False: 1.0 - entity_share, True: entity_share} if all(parts.values()) else {
        False: 1.0, True: 1.0}
    vector = {}
    for is_entity, weights in parts.items():
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        scale = math.sqrt(share[is_entity]) / norm
        vector.update((term, w * scale) for term, w in weights.items())
    return vector


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(term, 0.0) for term, w in a.items())


def salient_terms(vector: dict[str, float], df: dict[str, int], documents: int,
                  params: StoryParams) -> list[str]:
    """The blocking terms of an article: its highest-weighted terms that another document also
    uses and that are not common across the corpus."""
    max_df = max(params.max_bucket_members, int(params.max_df_share * documents))
    usable = [(w, t) for t, w in vector.items()
              if not is_entity_term(t) and 2 <= df.get(t, 1) <= max_df]
    return [t for _, t in sorted(usable, key=lambda x: (-x[0], x[1]))[:params.salient_terms]]


def time_bucket(moment: dt.datetime, window_hours: float) -> int:
    return int(moment.timestamp() // (window_hours * 3600))


def within_reach(lead_moment: dt.datetime | None, span, window_hours: float) -> bool:
    """Whether a stored story whose lead is at `lead_moment` can take an article of a run whose
    articles span `span` (TimeSpanFn): its lead within the window of one of them, or any lead
    when one of them is undated (compared whatever the time)."""
    if span is None:
        return False
    earliest, latest, undated = span
    if undated or lead_moment is None:
        return True
    window = dt.timedelta(hours=window_hours)
    return earliest - window <= lead_moment <= latest + window


def story_id_for(lead_article_id: str) -> str:
    return "st-" + hashlib.blake2b(lead_article_id.encode("utf-8"), digest_size=10).hexdigest()


@dataclasses.dataclass(frozen=True)
class StoryDoc:
    """One article (or an earlier run's story lead, `story` set) as the story stage sees it."""
    article_id: str
    moment: dt.datetime
    counts: tuple                 # (term, count) pairs
    title: str | None = None
    publisher: str | None = None
    entities: tuple = ()          # entity texts, most mentioned first
    story: StoryIndexEntry | None = None
    # False when the article has no publication date and `moment` is only when it was ingested:
    # such an article is compared with others whatever their time (see candidate_pairs).
    dated: bool = True
    source: str | None = None     # the site (domain, else publisher) that published it


@dataclasses.dataclass(frozen=True)
class StoryVector:
    doc: StoryDoc
    vector: tuple                 # (term, weight) pairs, L2-normalised
    salient: tuple

    def as_dict(self) -> dict[str, float]:
        return dict(self.vector)


def load_background(path: str | Path | None) -> tuple[dict[str, int], int]:
    """(document frequency by term, documents) of a background table: SHIPPED_BACKGROUND, a
    path, or None for none."""
    if path is None:
        return {}, 0
    if path == SHIPPED_BACKGROUND:
        path = BACKGROUND_PATH
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        table = json.load(stream)
    return table["df"], table["documents"]


def doc_of(article: Article) -> StoryDoc:
    counts = story_term_counts(article.title, article.text, article.entities)
    entities = tuple(e.text for e in sorted(article.entities, key=lambda e: (-e.count, e.start)))
    return StoryDoc(article_id=article.article_id,
                    moment=article.published_at or article.ingested_at,
                    counts=tuple(sorted(counts.items())), title=article.title,
                    publisher=article.publisher or article.domain, entities=entities,
                    dated=article.published_at is not None,
                    source=article.domain or article.publisher)


def doc_of_story(entry) -> StoryDoc:
    """An index row (dict or StoryIndexEntry) as the StoryDoc of that story's lead."""
    row = entry if isinstance(entry, dict) else dataclasses.asdict(entry)
    story = StoryIndexEntry(**{**row, "terms": [
        TermWeight(**t) if isinstance(t, dict) else t for t in row["terms"]]})
    return StoryDoc(article_id=story.lead_article_id, moment=story.lead_published_at,
                    counts=tuple((t.term, t.weight) for t in story.terms), title=story.title,
                    story=story)


def candidate_pairs(members: list[tuple[str, dt.datetime, bool, bool]], window: dt.timedelta,
                    max_members: int) -> list[tuple[str, str]]:
    """Pairs (smaller id first) of one blocking bucket's members (id, moment, is an earlier
    run's story, is dated): two dated members when their times are within `window`, an undated
    member (no publication date, only its ingestion time) with every other; two earlier-run
    stories never. A bucket over `max_members` is a term too common to block on: no pairs."""
    if len(members) > max_members:
        return []
    members = sorted(set(members), key=lambda m: (m[1], m[0]))
    dated = [m for m in members if m[3]]
    undated = [m for m in members if not m[3]]
    pairs = set()

    def add(a, b):
        if not (a[2] and b[2]):
            pairs.add((min(a[0], b[0]), max(a[0], b[0])))

    for i, a in enumerate(dated):
        for b in dated[i + 1:]:
            if b[1] - a[1] > window:
                break
            add(a, b)
    for i, a in enumerate(undated):
        for b in dated + undated[i + 1:]:
            add(a, b)
    return sorted(pairs)


# The blocking bucket of an undated article's salient terms: it holds, for each such term, the
# undated articles and every dated one that has the term salient, whatever their time.
UNDATED_BUCKET = -1


def blocking_keys(article_id: str, vector: StoryVector, window_hours: float,
                  undated_terms: frozenset = frozenset()):
    """((term, time bucket), (id, moment, is an earlier story, is dated)) for each salient
    term: a dated article in its bucket and the next (a window-long pair is then in one
    bucket at least), and in the undated bucket of each term an undated article has salient
    (`undated_terms`); an undated article in the undated bucket only."""
    doc = vector.doc
    member = (article_id, doc.moment, doc.story is not None, doc.dated)
    bucket = time_bucket(doc.moment, window_hours)
    for term in vector.salient:
        if doc.dated:
            yield (term, bucket), member
            yield (term, bucket + 1), member
        if not doc.dated or term in undated_terms:
            yield (term, UNDATED_BUCKET), member


def top_vector(vector: tuple, terms: int) -> tuple:
    """The `terms` highest-weighted (term, weight) pairs of a vector."""
    return tuple(sorted(vector, key=lambda tw: (-tw[1], tw[0]))[:terms])


def similarity(a: dict[str, float], b: dict[str, float], source_a: str | None,
               source_b: str | None, same_source_factor: float) -> float:
    """The cosine of two articles' vectors, discounted when one site published both."""
    score = cosine(a, b)
    if source_a and source_a == source_b:
        score *= same_source_factor
    return score


def link_edge(threshold: float, same_source_factor: float = 1.0):
    """Scores a candidate pair from its two payloads (source, top terms of the vector)."""
    def score(id_a: str, a: tuple, id_b: str, b: tuple):
        (source_a, terms_a), (source_b, terms_b) = a, b
        value = similarity(dict(terms_a), dict(terms_b), source_a, source_b, same_source_factor)
        return (id_a, id_b, value) if value >= threshold else None
    return score


@dataclasses.dataclass
class _Cluster:
    lead: StoryVector
    story_id: str
    members: list


class _LeadsByTime:
    """The stories of one component, found by their lead's time: a long-running event's
    component can hold tens of thousands of stories, and an article need only be compared with
    the leads within the window, not with all of them. Undated leads are within every window
    (they are few: an article without a date is one the extractor could not date)."""

    def __init__(self):
        self.clusters: list[_Cluster] = []        # in creation order
        self._lead_vectors: list[dict] = []
        self._by_time: list[tuple] = []            # (dated lead's moment, creation index), sorted
        self._undated: list[int] = []              # creation indexes of undated leads

    def add(self, cluster: _Cluster) -> None:
        if cluster.lead.doc.dated:
            bisect.insort(self._by_time, (cluster.lead.doc.moment, len(self.clusters)))
        else:
            self._undated.append(len(self.clusters))
        self.clusters.append(cluster)
        self._lead_vectors.append(cluster.lead.as_dict())

    def within(self, moment: dt.datetime | None, window: dt.timedelta):
        """(cluster, lead vector) of every lead within `window` of `moment` (None: of every
        lead), and of every undated lead, in creation order (so that ties resolve as a scan of
        all stories would)."""
        if moment is None:
            indexes = range(len(self.clusters))
        else:
            low = bisect.bisect_left(self._by_time, (moment - window, -1))
            high = bisect.bisect_right(self._by_time, (moment + window, len(self.clusters)))
            indexes = sorted([index for _, index in self._by_time[low:high]] + self._undated)
        for index in indexes:
            yield self.clusters[index], self._lead_vectors[index]


def cluster_component(members: list[StoryVector], params: StoryParams) -> list[_Cluster]:
    """Stories of one component: earlier runs' stories first, then each new article in time
    order joins the story whose lead is most similar to it (at least `link_threshold`, within
    the window), or leads a new one."""
    window = dt.timedelta(hours=params.window_hours)
    in_time_order = sorted(members, key=lambda m: (m.doc.moment, m.doc.article_id))
    old = [m for m in in_time_order if m.doc.story]
    new = [m for m in in_time_order if not m.doc.story]
    leads = _LeadsByTime()
    for member in old:
        leads.add(_Cluster(member, member.doc.story.story_id, []))
    for member in new:
        vector = member.as_dict()
        best, best_similarity = None, params.link_threshold
        moment = member.doc.moment if member.doc.dated else None
        for cluster, lead_vector in leads.within(moment, window):
            score = similarity(vector, lead_vector, member.doc.source, cluster.lead.doc.source,
                               params.same_source_factor)
            if score >= best_similarity:
                best, best_similarity = cluster, score
        if best is None:
            leads.add(_Cluster(member, story_id_for(member.doc.article_id), [member]))
        else:
            best.members.append(member)
    return [c for c in leads.clusters if c.members]


def _heaviest(weights: Counter, count: int) -> list[str]:
    return [key for key, _ in sorted(weights.items(), key=lambda kw: (-kw[1], kw[0]))[:count]]


def story_rows(cluster: _Cluster, params: StoryParams, run_id: str,
               updated_at: dt.datetime) -> tuple[Story, StoryIndexEntry]:
    """The stories/ row and the index entry of a story this run created or added to."""
    previous = cluster.lead.doc.story
    moments = [m.doc.moment for m in cluster.members]
    publishers = {m.doc.publisher for m in cluster.members if m.doc.publisher}
    first, last = min(moments), max(moments)
    count = len(cluster.members)
    if previous:
        first, last = min(first, previous.first_published), max(last, previous.last_published)
        publishers.update(previous.publishers)
        count += previous.member_count
    centroid: Counter = Counter()
    for member in [cluster.lead, *cluster.members]:
        centroid.update({t: w for t, w in member.vector if not is_entity_term(t)})
    entities: Counter = Counter()
    for member in cluster.members:
        for rank, text in enumerate(member.doc.entities[:20]):
            entities[text] += 20 - rank
    lead = cluster.lead.doc
    top_counts = sorted(lead.counts, key=lambda tc: (-tc[1], tc[0]))[:params.index_terms]
    story = Story(story_id=cluster.story_id, lead_article_id=lead.article_id,
                  lead_published_at=lead.moment, member_count=count,
                  first_published=first, last_published=last, updated_at=updated_at,
                  run_id=run_id, title=lead.title, publishers=sorted(publishers),
                  top_terms=_heaviest(centroid, params.top_terms),
                  top_entities=_heaviest(entities, 10))
    entry = StoryIndexEntry(story_id=story.story_id, lead_article_id=lead.article_id,
                            lead_published_at=lead.moment, member_count=count,
                            first_published=first, last_published=last,
                            updated_at=updated_at, run_id=run_id, title=lead.title,
                            publishers=story.publishers,
                            terms=[TermWeight(term=t, weight=float(c)) for t, c in top_counts])
    return story, entry


def latest_story(entries) -> StoryIndexEntry | dict:
    """The current entry of one story_id: the latest update (then the most members)."""
    def key(entry):
        row = entry if isinstance(entry, dict) else dataclasses.asdict(entry)
        return (row["updated_at"], row["member_count"], row["run_id"])
    return max(entries, key=key)


def story_partition(story: Story) -> tuple[tuple[str, str], ...]:
    from newsbeam.transforms.sinks import date_value
    return (("date", date_value(story.lead_published_at)),)


# --- DoFns and composite -------------------------------------------------------------------------


class DocumentFrequencyFn(beam.CombineFn):
    """StoryDocs -> {term: number of documents using it} for terms at least two use. Counts
    per bundle in a Counter (C speed), so no per-term element is shuffled; what is merged is
    the vocabulary, not the corpus."""

    def create_accumulator(self):
        return Counter()

    @metrics.timed(metrics.STAGE_STORIES)
    def add_input(self, counter, doc: StoryDoc):
        counter.update(term for term, _ in doc.counts)
        return counter

    def merge_accumulators(self, counters):
        merged = Counter()
        for counter in counters:
            merged.update(counter)
        return merged

    def extract_output(self, counter):
        return {term: count for term, count in counter.items() if count >= 2}


class _VectorFn(beam.DoFn):
    def __init__(self, params: StoryParams, background_path):
        self._params = params
        self._background_path = background_path

    def setup(self):
        self._background, self._background_documents = load_background(self._background_path)

    @metrics.timed(metrics.STAGE_STORIES)
    def process(self, doc: StoryDoc, run_df, documents):
        terms = dict(doc.counts)
        df = {term: run_df.get(term, 1) + self._background.get(word_of(term), 0)
              for term in terms}
        vector = tfidf_vector(terms, df, documents + self._background_documents,
                              self._params.entity_share)
        # Blocking looks at how many articles of the run share a term, not at the background.
        salient = salient_terms(vector, {t: run_df.get(t, 1) for t in terms}, documents,
                                self._params)
        yield doc.article_id, StoryVector(doc, tuple(sorted(vector.items())), tuple(salient))


class _ClusterFn(beam.DoFn):
    def __init__(self, params: StoryParams, run_id: str, updated_at: dt.datetime):
        self._params = params
        self._run_id = run_id
        self._updated_at = updated_at

    @metrics.timed(metrics.STAGE_STORIES)
    def process(self, keyed):
        _, members = keyed
        for cluster in cluster_component(list(members), self._params):
            story, entry = story_rows(cluster, self._params, self._run_id, self._updated_at)
            yield beam.pvalue.TaggedOutput(STORIES, story)
            yield beam.pvalue.TaggedOutput(STORY_INDEX, entry)
            for member in cluster.members:
                yield member.doc.article_id, (cluster.story_id,
                                              member.doc.article_id == story.lead_article_id)


def _with_story(keyed):
    _, grouped = keyed
    assignment = list(grouped["story"])
    for article in grouped["article"]:
        story_id, is_lead = assignment[0]
        yield dataclasses.replace(article, story_id=story_id, is_story_lead=is_lead)


def _label_or_self(keyed):
    node, grouped = keyed
    labels = list(grouped["label"])
    for vector in grouped["vector"]:
        yield (labels[0] if labels else node), vector


class TimeSpanFn(beam.CombineFn):
    """Articles -> (earliest, latest) moment (as doc_of takes it) of the dated ones and whether
    any is undated; None for no articles."""

    def create_accumulator(self):
        return None

    def add_input(self, span, article: Article):
        moment = article.published_at
        return self.merge_accumulators([span, (moment, moment, False) if moment is not None
                                        else (None, None, True)])

    def merge_accumulators(self, spans):
        spans = [s for s in spans if s is not None]
        if not spans:
            return None
        earliest = [s[0] for s in spans if s[0] is not None]
        latest = [s[1] for s in spans if s[1] is not None]
        return (min(earliest, default=None), max(latest, default=None),
                any(s[2] for s in spans))

    def extract_output(self, span):
        return span


def _per_window(combine_globally, pcoll):
    """A global combine as it must be in a windowed graph (the stream): one value per window
    that has elements, no default value for the others (Beam has none to give there)."""
    if not isinstance(pcoll.windowing.windowfn, beam.window.GlobalWindows):
        return combine_globally.without_defaults()
    return combine_globally


class LinkStories(beam.PTransform):
    """(Articles, story index rows of earlier runs) -> Articles with story_id and is_story_lead
    (main), Story rows (STORIES) and StoryIndexEntry rows (STORY_INDEX) for every story this run
    created or added to."""

    def __init__(self, indexed_stories, run_id: str, updated_at: dt.datetime,
                 params: StoryParams = StoryParams(), background_path=SHIPPED_BACKGROUND):
        """background_path: the background document-frequency table (SHIPPED_BACKGROUND, a
        path every worker can read, or None for none)."""
        super().__init__()
        self._background_path = None if background_path is None else str(background_path)
        self._indexed = indexed_stories
        self._run_id = run_id
        self._updated_at = updated_at
        self._params = params

    def expand(self, articles):
        params = self._params
        window = dt.timedelta(hours=params.window_hours)
        timed = metrics.timed(metrics.STAGE_STORIES)
        stories_before = (
            self._indexed
            | "KeyStory" >> beam.Map(lambda row: (row["story_id"] if isinstance(row, dict)
                                                  else row.story_id, row))
            | "ByStory" >> beam.GroupByKey()
            | "Latest" >> beam.MapTuple(lambda _, rows: latest_story(list(rows)))
            | "StoryDocs" >> beam.Map(doc_of_story))
        docs = ((articles | "ArticleDocs" >> beam.Map(doc_of), stories_before)
                | "AllDocs" >> beam.Flatten())
        df = docs | "DocumentFrequency" >> _per_window(
            beam.CombineGlobally(DocumentFrequencyFn()), docs)
        documents = docs | "CountDocs" >> _per_window(beam.combiners.Count.Globally(), docs)
        vectors = docs | "Vectors" >> beam.ParDo(
            _VectorFn(params, self._background_path), run_df=beam.pvalue.AsSingleton(df),
            documents=beam.pvalue.AsSingleton(documents))
        undated_terms = (
            vectors
            | "UndatedSalient" >> beam.FlatMap(
                lambda kv: [] if kv[1].doc.dated else list(kv[1].salient))
            | "UndatedTerms" >> _per_window(
                beam.CombineGlobally(beam.combiners.ToSetCombineFn()), vectors)
            | "Frozen" >> beam.Map(frozenset))
        pairs = (
            vectors
            | "BlockingKeys" >> beam.FlatMap(
                timed(lambda kv, undated: blocking_keys(*kv, params.window_hours, undated)),
                undated=beam.pvalue.AsSingleton(undated_terms, default_value=frozenset()))
            | "Blocks" >> beam.GroupByKey()
            | "PairsByTerm" >> beam.FlatMap(timed(
                lambda kv: [(pair, kv[0][0]) for pair in candidate_pairs(
                    list(kv[1]), window, params.max_bucket_members)]))
            | "DistinctPairTerms" >> beam.Distinct()
            | "SharedTermCount" >> beam.combiners.Count.PerKey()
            | "EnoughShared" >> beam.Filter(lambda kv: kv[1] >= params.min_shared_terms)
            | "CandidatePairs" >> beam.Map(lambda kv: kv[0]))
        scored = vectors | "TopTerms" >> beam.MapTuple(timed(
            lambda article_id, v: (article_id, (v.doc.source,
                                                top_vector(v.vector, params.scored_terms)))))
        edges = pairs | "Score" >> ScorePairs(
            scored, timed(link_edge(params.link_threshold, params.same_source_factor)))
        labels = (edges | "EdgeEnds" >> beam.Map(lambda e: (e[0], e[1]))
                  | "Components" >> ConnectedComponents())
        clustered = (
            {"label": labels, "vector": vectors}
            | "JoinLabels" >> beam.CoGroupByKey()
            | "ByComponent" >> beam.FlatMap(_label_or_self)
            | "Component" >> beam.GroupByKey()
            | "Cluster" >> beam.ParDo(_ClusterFn(params, self._run_id, self._updated_at))
            .with_outputs(STORIES, STORY_INDEX, main="assignments"))
        linked = (
            {"article": articles | "KeyArticles" >> beam.Map(lambda a: (a.article_id, a)),
             "story": clustered.assignments}
            | "JoinStories" >> beam.CoGroupByKey()
            | "SetStory" >> beam.FlatMap(_with_story))
        return {"articles": linked, STORIES: clustered[STORIES],
                STORY_INDEX: clustered[STORY_INDEX]}
