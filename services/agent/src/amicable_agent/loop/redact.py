"""Keep secrets out of what leaves the agent: tool results sent to the model provider and
``trace_event`` payloads sent to the editor.

Both get whole values replaced by ``[REDACTED]``, never a prefix of one (a redactor that
stopped at a comma once let the rest of a JSON secret through):

* values the agent knows to be secret (:func:`known_secrets`: its API keys, tokens,
  passwords, and the string values inside a JSON secret such as Hasura's JWT config);
* tokens with a recognisable shape (``sk-ant-…``, GitHub/GitLab/Slack tokens, AWS key ids,
  bearer tokens, JWTs) and passwords in URLs (``postgres://user:…@``);
* environment-style lines whose name looks secret (``AWS_SECRET_ACCESS_KEY=…``,
  ``export OPENAI_API_KEY='…'``, ``DB_PASSWORD: …``): the rest of the line.

Trace payloads additionally lose ``key = value`` assignments anywhere (``token=…`` in a
URL, ``"apiKey": "…"`` in JSON: the whole quoted or bracketed value), base64 blobs, long
strings, and values under secret-looking keys. Tool results keep those: source code the
model reads and edits is full of ``const token = …``, and rewriting it would break edits.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Longest string kept in a trace payload.
TRACE_STRING_MAX = 2000
REDACTED = "[REDACTED]"
#: Shorter known values are not replaced (they would match ordinary text).
_MIN_SECRET = 6

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
_SECRET_WORD = r"(?:api[_-]?key|access[_-]?key|secret|token|password|passwd|credential|private[_-]?key|auth(?!ors?(?![a-z])))"
#: ``scheme://user:password@`` -> the password.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]+:)([^\s/@]+)(@)")
#: ``NAME=value`` / ``export NAME=value`` / ``NAME: value`` / ``"NAME": value`` with an
#: upper-case, secret-looking name (env output, ``.env`` files, also after ``cat -n`` or
#: grep prefixes): the whole rest of the line. Lower-case code (``const token = …``) is not.
_ENV_LINE = re.compile(
    r"(?m)((?<![A-Za-z0-9_])[A-Z0-9_]*"
    r"(?:API_?KEY|ACCESS_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_?KEY|AUTH(?!ORS?(?![A-Z])))"
    r"[A-Z0-9_]*[\"']?[ \t]*[=:][ \t]*)(\S.*)$"
)
#: ``name = value`` anywhere (traces only): a quoted value whole (escapes included), a
#: ``{…}``/``[…]`` value to the end of the line, else up to whitespace or ``&``.
_ASSIGNMENT = re.compile(
    rf"(?i)\b([A-Za-z0-9_]*{_SECRET_WORD}[A-Za-z0-9_]*[\"']?)(\s*[=:]\s*)"
    r"(\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?|[{\[][^\n]*|[^\s&]+)"
)
_DATA_URL = re.compile(r"data:[\w/+.\-]+;base64,[A-Za-z0-9+/=]+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
_SECRET_KEYS = re.compile(r"(?i)(api[_-]?key|token|secret|password|authorization|base64)")
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORD}|_KEY$|^KEY$")


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def known_secrets(env: Mapping[str, str], extra: Iterable[str | None] = ()) -> tuple[str, ...]:
    """Values to redact wherever they appear: ``extra`` plus every environment variable
    whose name looks secret, and the string leaves of those that hold JSON (longest first,
    so a value is replaced before a part of it)."""
    found: set[str] = {s for s in extra if s}
    for name, value in env.items():
        if not looks_secret(name) or len(value) < _MIN_SECRET:
            continue
        found.add(value)
        try:
            parsed = json.loads(value)
        except ValueError:
            continue
        found.update(_string_leaves(parsed))
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))


def _string_leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _string_leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _string_leaves(item)]
    return []


def redact_secrets(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without known secret values, secret-shaped tokens, URL passwords and the
    values of secret-looking environment lines (what a tool result may carry)."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    return _ENV_LINE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_text(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """For traces: :func:`redact_secrets`, plus secret assignments anywhere and base64 blobs."""
    text = _DATA_URL.sub(lambda m: f"[base64 data, {len(m.group(0))} chars]", text)
    text = _BASE64_RUN.sub(lambda m: f"[base64 data, {len(m.group(0))} chars]", text)
    text = redact_secrets(text, secrets=secrets)
    return _ASSIGNMENT.sub(_assignment, text)


def _assignment(match: re.Match[str]) -> str:
    value = match.group(3)
    if value == REDACTED or value.startswith(("[REDACTED", "[base64")):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


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
                    REDACTED if "base64" not in str(key) else (f"[base64 data, {len(item)} chars]")
                )
            else:
                out[str(key)] = redact_payload(item, secrets=secrets, limit=limit, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [
            redact_payload(v, secrets=secrets, limit=limit, depth=depth + 1) for v in value[:100]
        ]
    return value
