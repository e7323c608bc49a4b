"""trafilatura on one page: what extraction runs in its time-limited child process.

Kept apart from newsbeam.transforms/extract.py so that the child imports trafilatura and nothing else
(not Beam): it starts faster and holds less memory.
"""

from __future__ import annotations

import trafilatura
from trafilatura.settings import DEFAULT_CONFIG

_PAGE_FIELDS = ("title", "author", "url", "hostname", "description", "sitename", "date",
                "categories", "tags", "text", "language")

# libxml2 stops parsing a document that goes past one of its resource limits (elements nested
# more than 256 deep, a text node over 10 MB) and reports it in the parser's error log; what
# follows the point where it stopped is not in the tree.
_RESOURCE_LIMIT = "ERR_RESOURCE_LIMIT"


def parser_limit_hit(tree) -> str | None:
    """lxml's message when parsing `tree` stopped at a libxml2 resource limit, else None. Read
    from the error log of the parser that built the tree, right after it did."""
    parser = tree.getroottree().parser
    if parser is None:
        return None
    for entry in parser.error_log:
        if entry.type_name == _RESOURCE_LIMIT:
            return entry.message.strip()
    return None


def extract_page(html: bytes | str, url: str | None) -> dict | None:
    """The main text and metadata of a page as plain values (they cross a process boundary),
    with `parser_limit` set when the HTML parser stopped early; None when the page parses to
    nothing or trafilatura finds no main text in a page that parsed whole."""
    # trafilatura's own loader (charset, repairs), so that the tree is the one it would build;
    # loading it here gives the parser's error log while it is still this page's.
    tree = trafilatura.load_html(html, DEFAULT_CONFIG.getint("DEFAULT", "MAX_FILE_SIZE"))
    if tree is None:
        return None
    parser_limit = parser_limit_hit(tree)
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=False,
        deduplicate=False)
    if document is None:
        return {"parser_limit": parser_limit} if parser_limit else None
    fields = document.as_dict() if hasattr(document, "as_dict") else dict(document)
    return {**{key: fields.get(key) for key in _PAGE_FIELDS}, "parser_limit": parser_limit}
