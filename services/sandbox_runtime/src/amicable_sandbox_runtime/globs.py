"""Glob patterns (``**/*.tsx``, ``src/*.{ts,tsx}``) compiled to regular expressions (pure)."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a glob matched against a ``/``-separated relative path.

    ``*`` and ``?`` never cross ``/``; ``**/`` matches any number of directories; ``[...]``
    and ``{a,b}`` work as in shells. A pattern without ``/`` is matched against the base
    name only (so ``*.ts`` finds TypeScript files at any depth, as ripgrep's ``--glob`` does).
    """
    body = pattern.lstrip("/")
    if "/" not in body:
        body = "**/" + body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if body.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := body.find("]", i + 2)) != -1:
            inner = body[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        elif c == "{" and (end := body.find("}", i)) != -1:
            alternatives = body[i + 1 : end].split(",")
            out.append("(?:" + "|".join(re.escape(a) for a in alternatives) + ")")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_matches(pattern: str, rel: str) -> bool:
    """Whether a relative path (no leading ``/``) matches ``pattern``."""
    return compile_glob(pattern).match(rel) is not None
