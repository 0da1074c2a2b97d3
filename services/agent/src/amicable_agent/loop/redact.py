"""Make tool inputs/outputs safe and small enough for ``trace_event`` payloads.

Secrets (API keys, bearer tokens, ``password=``-style assignments) are replaced by
``[REDACTED]``, base64 blobs by a size note, and long strings are cut.
"""

from __future__ import annotations

import re
from typing import Any

#: Longest string kept in a trace payload.
TRACE_STRING_MAX = 2000

_SECRET_PATTERNS = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bxox[abpr]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
)
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:api[_-]?key|token|secret|password|passwd)[A-Z0-9_]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,]+)"
)
_DATA_URL = re.compile(r"data:[\w/+.\-]+;base64,[A-Za-z0-9+/=]+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
_SECRET_KEYS = re.compile(r"(?i)(api[_-]?key|token|secret|password|authorization|base64)")


def redact_text(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with known secret values, secret-looking tokens and base64 blobs removed."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[REDACTED]")
    text = _DATA_URL.sub(lambda m: f"[base64 data, {len(m.group(0))} chars]", text)
    text = _BASE64_RUN.sub(lambda m: f"[base64 data, {len(m.group(0))} chars]", text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[REDACTED]", text)
    return _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)


def truncate(text: str, limit: int = TRACE_STRING_MAX) -> str:
    """``text`` cut to about ``limit`` characters with a note of how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


def redact_payload(
    value: Any, *, secrets: tuple[str, ...] = (), limit: int = TRACE_STRING_MAX, depth: int = 0
) -> Any:
    """A JSON value made safe for a trace: redacted, base64-free, strings cut, depth-bounded."""
    if depth > 6:
        return "…"
    if isinstance(value, str):
        return truncate(redact_text(value, secrets=secrets), limit)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in list(value.items())[:100]:
            if isinstance(item, str) and _SECRET_KEYS.search(str(key)) and key != "content":
                out[str(key)] = (
                    "[REDACTED]"
                    if "base64" not in str(key)
                    else (f"[base64 data, {len(item)} chars]")
                )
            else:
                out[str(key)] = redact_payload(item, secrets=secrets, limit=limit, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [
            redact_payload(v, secrets=secrets, limit=limit, depth=depth + 1) for v in value[:100]
        ]
    return value
