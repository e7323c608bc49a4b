"""A small dataset such as a user's first week gives: two real `newsbeam run`s over the seeds
and generated JSONL and text inputs (several days, topics, languages, publishers, wire credits,
exact copies, bad lines, and in the second run articles the first one stored). Built once per
test session by the `sample_dataset` fixture (tests/conftest.py); the inspect, report and
query-recipe tests read it."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

FIRST_RUN, SECOND_RUN = "20261129-first", "20261201-second"

SECTIONS = ("Sport", "Business", "Politics", "Health", "Science", "Culture")
PUBLISHERS = ("The Example Herald", "Daily Planet", "Metro Times", "Coast Gazette")
CITIES = ("Nairobi", "Lisbon", "Ottawa", "Hanoi", "Lima", "Oslo", "Accra", "Manila")
PEOPLE = ("Maria Okafor", "Tomas Lindqvist", "Aiko Tanaka", "Rafael Moreno", "Priya Raman",
          "Jonas Weber", "Leila Haddad", "Samuel Mensah")
SUBJECTS = {
    "Sport": ("the national football team", "the cycling federation", "the home side",
              "the marathon organisers", "the tennis champion", "the rugby coach"),
    "Business": ("the central bank", "the largest retailer", "shipping companies",
                 "the stock exchange", "car makers", "the energy regulator"),
    "Politics": ("the parliament", "the opposition party", "the prime minister",
                 "the coalition government", "regional governors", "the election commission"),
    "Health": ("the health ministry", "hospital doctors", "the vaccine agency",
               "nurses' unions", "the cancer institute", "public health officials"),
    "Science": ("the space agency", "university researchers", "the observatory",
                "marine biologists", "the physics laboratory", "climate scientists"),
    "Culture": ("the film festival", "the national museum", "the opera house",
                "a celebrated novelist", "the music awards", "the theatre company"),
}
VERBS = ("announced", "rejected", "unveiled", "postponed", "defended", "questioned", "approved",
         "welcomed", "criticised", "delayed")
OBJECTS = ("a new plan for the coming season", "an ambitious budget", "the disputed report",
           "a long-awaited agreement", "the proposed reforms", "a record investment",
           "the preliminary results", "an emergency programme", "the revised schedule",
           "a surprising partnership")
CLOSERS = ("Critics said the decision came too late.", "Supporters praised the move.",
           "Further talks are expected next month.", "Details will follow later this week.",
           "Observers expect a heated debate.", "The figures surprised many analysts.",
           "Officials declined to comment further.", "Local residents reacted with relief.")
GERMAN = (
    "Die Bundesregierung hat am Dienstag in Berlin ein neues Gesetz zur Förderung der "
    "erneuerbaren Energien beschlossen. Nach Angaben des Wirtschaftsministeriums sollen damit "
    "in den kommenden Jahren tausende Arbeitsplätze entstehen, vor allem in Norddeutschland.",
    "Der Exportüberschuss der deutschen Industrie ist im Oktober deutlich gesunken. Die "
    "Unternehmen klagen über hohe Energiepreise und eine schwache Nachfrage aus dem Ausland, "
    "wie das Statistische Bundesamt in Wiesbaden mitteilte.",
    "Die Gewerkschaften haben für die kommende Woche zu Warnstreiks im öffentlichen Nahverkehr "
    "aufgerufen. Betroffen sind Busse und Bahnen in mehreren Großstädten, darunter Hamburg, "
    "München und Köln.",
)


def _article(rng: random.Random, number: int, section: str, day: int) -> dict:
    city, person = rng.choice(CITIES), rng.choice(PEOPLE)
    subject, verb, obj = rng.choice(SUBJECTS[section]), rng.choice(VERBS), rng.choice(OBJECTS)
    credit = rng.choice(("(Reuters) - ", "(AFP) - ", "", ""))
    other_city = rng.choice([c for c in CITIES if c != city])
    text = (
        f"{city.upper()} {credit}{subject.capitalize()} {verb} {obj} on day {day} of the month, "
        f"{person} told reporters in {city}. The announcement, number {number} in a series "
        f"this autumn, follows {rng.randint(3, 40)} weeks of talks with partners from "
        f"{other_city}. {rng.choice(CLOSERS)} {person} added that about {rng.randint(2, 90)} "
        f"per cent of those asked in {other_city} supported the idea. {rng.choice(CLOSERS)}")
    return {
        "id": f"gen-{number}",
        "url": f"https://news{number % 4}.example.test/{section.lower()}/story-{number}",
        "title": f"{subject.capitalize()} {verb} {obj} ({city}, {number})",
        "published_at": f"2026-11-{day:02d}T{rng.randint(6, 22):02d}:15:00Z",
        "categories": [section],
        "publisher": PUBLISHERS[number % len(PUBLISHERS)],
        "text": text,
    }


def write_inputs(folder: Path, seeds: Path) -> tuple[Path, Path]:
    """The inputs of the two runs: (first, second)."""
    rng = random.Random(15)
    first, second = folder / "first", folder / "second"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    for seed in sorted(seeds.iterdir()):
        shutil.copy(seed, first / seed.name)
    records = [_article(rng, n, SECTIONS[n % len(SECTIONS)], 20 + n % 9) for n in range(24)]
    copies = [{**records[3], "id": "copy-3", "url": "https://mirror.example.test/copy-3"},
              {**records[7], "id": "copy-7", "url": "https://mirror.example.test/copy-7"}]
    german = [{"id": f"de-{n}", "url": f"https://zeitung.example.test/wirtschaft/{n}",
               "title": text.split(".")[0], "published_at": f"2026-11-{22 + n}T09:00:00Z",
               "categories": ["Wirtschaft"], "publisher": "Beispiel Zeitung", "text": text}
              for n, text in enumerate(GERMAN)]
    lines = [json.dumps(r) for r in records + copies + german]
    lines += ["{not json", json.dumps({"id": "no-body", "title": "a record without text"})]
    (first / "week.jsonl").write_text("\n".join(lines) + "\n")
    (first / "empty.txt").write_text("")
    later = [_article(rng, n, SECTIONS[n % len(SECTIONS)], 30) for n in range(24, 30)]
    again = [records[0], records[1]]   # stored by the first run: already ingested
    (second / "later.jsonl").write_text("\n".join(json.dumps(r) for r in later + again) + "\n")
    return first, second


# What the two runs hold, as the inputs above make them.
FIRST_RUN_INPUTS = 2 + 29 + 2 + 1     # seeds, good JSONL lines, bad lines, the empty file
SECOND_RUN_INPUTS = 8
ARTICLES = 2 + 24 + 3 + 6             # seeds, generated, German, the second run's new ones
DUPLICATES = 2
ERRORS = 3
