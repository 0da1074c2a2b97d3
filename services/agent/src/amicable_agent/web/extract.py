"""Readable text from a fetched body: main content of HTML by trafilatura (boilerplate such as
navigation and footers removed), a plain text walk of the HTML when it finds nothing, text
types as they are. Runs in a worker thread: extraction of a big page takes a while."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio

from .errors import FetchFailed

if TYPE_CHECKING:
    from .fetch import Fetched

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _decode(fetched: Fetched) -> str:
    charset = fetched.charset or "utf-8"
    try:
        return fetched.body.decode(charset, errors="replace")
    except LookupError:
        return fetched.body.decode("utf-8", errors="replace")


def _title(body: bytes) -> str:
    match = _TITLE.search(body[:200_000])
    if not match:
        return ""
    return " ".join(match.group(1).decode("utf-8", errors="replace").split())[:300]


def _plain_text(html: str) -> str:
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for bad in root.xpath("//script|//style|//noscript|//template|//svg"):
        bad.drop_tree()
    text = root.text_content()
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def extract_sync(fetched: Fetched) -> tuple[str, str]:
    """``(title, text)`` of ``fetched`` (blocking).

    Raises:
        FetchFailed: the content type is not text (an image, a PDF, an archive…).
    """
    kind = fetched.content_type.split(";")[0].strip().lower()
    looks_html = fetched.body.lstrip()[:100].lower().startswith((b"<!doctype html", b"<html"))
    if kind in _HTML_TYPES or (not kind and looks_html):
        import trafilatura

        html = _decode(fetched)
        text = trafilatura.extract(
            html, url=fetched.final_url, output_format="markdown", include_tables=True,
            include_links=True, favor_recall=True,
        ) or _plain_text(html)  # fmt: skip
        return _title(fetched.body), text.strip()
    if kind.startswith(_TEXT_TYPES) or kind.endswith(("+json", "+xml")) or not kind:
        return "", _decode(fetched).strip()
    raise FetchFailed(f"the response is {kind} ({len(fetched.body)} bytes), not text")


async def extract(fetched: Fetched) -> tuple[str, str]:
    """:func:`extract_sync` in a worker thread (abandoned if the caller is cancelled)."""
    return await trio.to_thread.run_sync(extract_sync, fetched, abandon_on_cancel=True)
