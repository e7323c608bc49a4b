"""trafilatura on one page: what extraction runs in its time-limited child process.

Kept apart from transforms/extract.py so that the child imports trafilatura and nothing else
(not Beam): it starts faster and holds less memory.
"""

from __future__ import annotations

import trafilatura

_PAGE_FIELDS = ("title", "author", "url", "hostname", "description", "sitename", "date",
                "categories", "tags", "text", "language")


def extract_page(html: bytes | str, url: str | None) -> dict | None:
    """The main text and metadata of a page as plain values (they cross a process boundary), or
    None when trafilatura finds no main text."""
    document = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=False,
        deduplicate=False)
    if document is None:
        return None
    fields = document.as_dict() if hasattr(document, "as_dict") else dict(document)
    return {key: fields.get(key) for key in _PAGE_FIELDS}
