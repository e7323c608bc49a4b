"""Builds transforms/data/entity_aliases.json.gz, the entity stage's cross-article alias table.

    .venv/bin/pip install -e '.[data]'     # pycountry, only needed to rebuild the table
    .venv/bin/python bench/make_entity_aliases.py

Sources:
- pycountry (ISO 3166-1 from Debian's iso-codes, maintained; LGPL-2.1): every country's short
  name, official name and common name. The canonical name is the common name where pycountry
  has one ("Bolivia", "South Korea"), else the short name with a ", ..." qualifier turned
  around or dropped, and for the countries whose ISO name is not the name news uses, the news
  name below (NEWS_NAMES).
- A small hand-curated list (CURATED, below): the abbreviations and short forms news writes
  for countries and unions ("US", "U.S.", "UK", "Britain", "UAE"), a few US places ("NY",
  "LA", "DC") and a few international organisations known by their initials. Only forms that
  name one thing in news are listed.

The table is JSON: {"about": ..., "entities": {canonical: {"label": ..., "aliases": [...]}}}.
Lookups fold case and white space, except aliases of two or three capitals ("US", "UK"), which
match only as written so that "us" the pronoun never becomes a country.
"""

from __future__ import annotations

import gzip
import json
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "transforms" / "data" / "entity_aliases.json.gz"

# ISO alpha-2 -> the name news uses, where pycountry's common or short name is not it.
NEWS_NAMES = {
    "US": "United States", "GB": "United Kingdom", "RU": "Russia", "CZ": "Czech Republic",
    "CI": "Ivory Coast", "CD": "Democratic Republic of the Congo", "CG": "Republic of the Congo",
    "TR": "Turkey", "PS": "Palestine", "VA": "Vatican City", "BN": "Brunei",
    "FM": "Micronesia", "CV": "Cape Verde", "SZ": "Eswatini", "MK": "North Macedonia",
    "TW": "Taiwan", "NL": "Netherlands", "KR": "South Korea", "KP": "North Korea",
}

# Canonical name -> (label, the other forms news writes it in).
CURATED = {
    "United States": ("GPE", ["US", "U.S.", "U.S", "USA", "U.S.A.", "United States of America",
                              "America", "the United States", "the US", "the U.S."]),
    "United Kingdom": ("GPE", ["UK", "U.K.", "Britain", "Great Britain", "the UK",
                               "the United Kingdom"]),
    "United Arab Emirates": ("GPE", ["UAE", "U.A.E.", "Emirates"]),
    "Russia": ("GPE", ["Russian Federation"]),
    "Czech Republic": ("GPE", ["Czechia"]),
    "Netherlands": ("GPE", ["Holland", "The Netherlands"]),
    "Ivory Coast": ("GPE", ["Côte d'Ivoire", "Cote d'Ivoire"]),
    "Turkey": ("GPE", ["Türkiye", "Turkiye"]),
    "South Korea": ("GPE", ["Republic of Korea", "S. Korea"]),
    "North Korea": ("GPE", ["DPRK", "N. Korea"]),
    "Democratic Republic of the Congo": ("GPE", ["DR Congo", "DRC", "D.R. Congo"]),
    "Myanmar": ("GPE", ["Burma"]),
    "Vatican City": ("GPE", ["Holy See", "Vatican"]),
    "Eswatini": ("GPE", ["Swaziland"]),
    "North Macedonia": ("GPE", ["Macedonia"]),
    # US places news abbreviates (a place in two or three capitals the table does not know is
    # dropped as no place, so the common ones are listed).
    "New York": ("GPE", ["NY", "N.Y."]),
    "New York City": ("GPE", ["NYC"]),
    "Los Angeles": ("GPE", ["LA", "L.A."]),
    "Washington, D.C.": ("GPE", ["DC", "D.C."]),
    "European Union": ("ORG", ["EU", "E.U."]),
    "United Nations": ("ORG", ["UN", "U.N."]),
    "NATO": ("ORG", ["North Atlantic Treaty Organization", "Nato", "OTAN"]),
    "World Health Organization": ("ORG", ["WHO"]),
    "International Monetary Fund": ("ORG", ["IMF"]),
}


def _turned_around(name: str) -> str:
    """'Korea, Republic of' -> 'Republic of Korea'; 'Bolivia, Plurinational State of' ->
    'Plurinational State of Bolivia'; names without a comma as they are."""
    if ", " not in name:
        return name
    head, qualifier = name.split(", ", 1)
    return f"{qualifier} {head}"


def build() -> dict:
    import pycountry
    entities: dict[str, dict] = {}

    def add(canonical: str, label: str, forms):
        entry = entities.setdefault(canonical, {"label": label, "aliases": []})
        for form in forms:
            if form and form != canonical and form not in entry["aliases"]:
                entry["aliases"].append(form)

    for country in pycountry.countries:
        common = getattr(country, "common_name", None)
        official = getattr(country, "official_name", None)
        canonical = NEWS_NAMES.get(country.alpha_2) or common or \
            (country.name if ", " not in country.name else country.name.split(", ")[0])
        forms = [country.name, _turned_around(country.name), common, official]
        add(canonical, "GPE", [f for f in forms if f and ", " not in f])
    for canonical, (label, forms) in CURATED.items():
        add(canonical, label, forms)
    # A form must name one entity: drop any the table gives to two.
    owners: dict[str, set] = {}
    for canonical, entry in entities.items():
        for form in [canonical, *entry["aliases"]]:
            owners.setdefault(form.casefold(), set()).add(canonical)
    for canonical, entry in entities.items():
        entry["aliases"] = sorted(f for f in entry["aliases"] if len(owners[f.casefold()]) == 1)
    version = metadata.version("pycountry")
    return {"about": f"Built by bench/make_entity_aliases.py from pycountry {version} "
                     "(ISO 3166-1, LGPL-2.1) and a hand-curated list of news forms.",
            "entities": dict(sorted(entities.items()))}


def main() -> int:
    table = build()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(table, ensure_ascii=False, indent=0, sort_keys=True).encode("utf-8")
    with gzip.GzipFile(OUTPUT, "wb", mtime=0) as out:
        out.write(data)
    aliases = sum(len(e["aliases"]) for e in table["entities"].values())
    print(f"{OUTPUT.relative_to(ROOT)}: {len(table['entities'])} entities, {aliases} aliases, "
          f"{OUTPUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
