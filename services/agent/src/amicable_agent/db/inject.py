"""The browser side of the app database: ``amicable-db.js`` and the ``index.html`` tag.

Only the ``vite_index_html`` template kind is supported: the file goes to
``/public/amicable-db.js`` (Vite serves ``public/`` at ``/`` in dev and copies it into
builds, where upstream's root-level file was dropped by ``vite build``) and ``/index.html``
gets ``<script src="/amicable-db.js"></script>`` before ``</head>`` when it lacks it.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

#: Workspace path of the generated file.
DB_JS_PATH = "/public/amicable-db.js"
#: Workspace path of the entry file that loads it.
INDEX_HTML_PATH = "/index.html"
DB_SCRIPT_TAG = '<script src="/amicable-db.js"></script>'
_GLOBAL = "window.__AMICABLE_DB__"
#: What the file says when the app has no database (Hasura off or unavailable).
PLACEHOLDER_JS = f"{_GLOBAL} = null;\n"
_ASSIGN = re.compile(r"window\.__AMICABLE_DB__\s*=\s*(\{.*\})\s*;?\s*$", re.DOTALL)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_HAS_TAG = re.compile(r"""<script[^>]*\ssrc\s*=\s*["']/amicable-db\.js["']""", re.IGNORECASE)


def graphql_url(public_base_url: str | None, app_id: str) -> str:
    """``<public base>/db/apps/<app_id>/graphql`` (a path only if no base is known)."""
    path = f"/db/apps/{quote(app_id, safe='')}/graphql"
    return (public_base_url or "").rstrip("/") + path


def db_js(*, app_id: str, app_key: str, graphql_url: str, preview_origin: str) -> str:
    """The content of ``amicable-db.js``: one assignment of a compact, key-sorted object.

    ASCII-only JSON, so no character can end the statement early in any JS engine.
    """
    doc = {
        "appId": app_id,
        "appKey": app_key,
        "graphqlUrl": graphql_url,
        "previewOrigin": preview_origin,
    }
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return f"{_GLOBAL} = {body};\n"


def parse_db_js(text: str) -> dict[str, Any] | None:
    """The object assigned by an ``amicable-db.js`` (None for placeholders/garbage)."""
    match = _ASSIGN.search(text.strip())
    if match is None:
        return None
    try:
        doc = json.loads(match.group(1))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def patch_index_html(html: str) -> str | None:
    """``html`` with the ``amicable-db.js`` tag added, or None if it already has one.

    The tag goes before ``</head>`` (so it runs before the app's module script), else at
    the end.
    """
    if _HAS_TAG.search(html):
        return None
    match = _HEAD_END.search(html)
    if match is None:
        sep = "" if html.endswith("\n") or not html else "\n"
        return f"{html}{sep}{DB_SCRIPT_TAG}\n"
    return f"{html[: match.start()]}  {DB_SCRIPT_TAG}\n  {html[match.start() :]}"
