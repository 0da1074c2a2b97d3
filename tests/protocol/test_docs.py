"""docs/protocol.md: its links resolve and it covers every message type."""

from __future__ import annotations

import re
from pathlib import Path

from amicable_protocol.messages import _CLIENT_DATA, SERVER_DATA

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "protocol.md"


def test_relative_links_resolve() -> None:
    links = re.findall(r"\]\((\.\./[^)#]+)\)", DOC.read_text(encoding="utf-8"))
    assert links
    missing = [link for link in links if not (DOC.parent / link).exists()]
    assert missing == []


def test_every_message_type_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for mtype in {*_CLIENT_DATA, *SERVER_DATA}:
        assert f"| `{mtype}`" in text, mtype
