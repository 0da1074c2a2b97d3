"""``/schema/intent``: a person's words become a draft, through the model.

The model gets the current schema, the draft and the request, and must answer one JSON
object. Its draft goes through the same :func:`~.schema_model.parse_draft` as the
browser's, so the model can propose nothing the editor would not accept from a person; the
person still reviews and applies it. Pure: the HTTP layer calls the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from amicable_agent.errors import AgentError

from .schema_model import DRAFT_TYPES, FK_RULES, InvalidDraft, SchemaDef, parse_draft, schema_json

MAX_INTENT_CHARS = 4000
MAX_CARDS = 20
_OBJECT = re.compile(r"\{.*\}", re.S)

SYSTEM = (
    "You change the database schema of a web app for its author. You get the current schema, "
    "the author's draft (unapplied edits) and a request. Answer with ONE JSON object and "
    'nothing else: {"assistant_message": str, "draft": <the whole new draft, same shape '
    'as the input draft>, "change_cards": [{"title": str, "description": str, '
    '"kind": str, "risk": "low"|"medium"|"high"}], "needs_clarification": bool, '
    '"clarification_question": str, "clarification_options": [str]}. Names: lower case '
    "letters, digits and _, starting with a letter. Column types: "
    + ", ".join(sorted(set(DRAFT_TYPES.values())))
    + '. Defaults: boolean, number, string or {"raw": "now()"}. Relationship rules: '
    + ", ".join(FK_RULES)
    + ". New tables get an id bigserial primary key automatically unless a column is marked "
    "is_primary. Keep every table and column you are not asked to change. If the request is "
    "unclear, set needs_clarification and return the draft unchanged."
)


class IntentReplyError(AgentError, ValueError):
    """The model's answer is not a usable reply; ``str(exc)`` says why."""


def intent_text(body: dict[str, Any]) -> str:
    """The request's ``intent_text``, trimmed.

    Raises:
        InvalidDraft: missing, empty or too long.
    """
    text = body.get("intent_text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidDraft("intent_text must be a non-empty string")
    if len(text) > MAX_INTENT_CHARS:
        raise InvalidDraft(f"intent_text is longer than {MAX_INTENT_CHARS} characters")
    return text.strip()


def intent_prompt(current: SchemaDef, draft: SchemaDef, text: str) -> str:
    """The user message for the model."""
    return (
        f"Current schema:\n{json.dumps(schema_json(current))}\n\n"
        f"Draft:\n{json.dumps(schema_json(draft))}\n\nRequest:\n{text}"
    )


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _cards(raw: Any) -> list[dict[str, Any]]:
    cards = raw if isinstance(raw, list) else []
    out = []
    for i, card in enumerate(cards[:MAX_CARDS]):
        if not isinstance(card, dict):
            continue
        risk = card.get("risk") if card.get("risk") in ("low", "medium", "high") else "medium"
        out.append({"id": f"card_{i + 1}", "title": _str(card.get("title"), 200),
                    "description": _str(card.get("description"), 1000),
                    "kind": _str(card.get("kind"), 60), "risk": risk})  # fmt: skip
    return out


def parse_intent_reply(answer: str, current: SchemaDef, draft: SchemaDef) -> dict[str, Any]:
    """Upstream's intent answer from the model's text (``base_version`` added by the caller).

    Raises:
        IntentReplyError: no JSON object, or a draft :func:`parse_draft` refuses.
    """
    match = _OBJECT.search(answer)
    try:
        doc = json.loads(match.group(0)) if match else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise IntentReplyError("the model did not answer with a JSON object")
    clarify = doc.get("needs_clarification") is True
    proposed = draft
    if not clarify:
        try:
            proposed = parse_draft(doc.get("draft"), current)
        except InvalidDraft as exc:
            raise IntentReplyError(f"the model proposed an invalid draft: {exc}") from exc
    options = doc.get("clarification_options")
    labels = [o for o in options if isinstance(o, str)][:6] if isinstance(options, list) else []
    return {
        "draft": schema_json(proposed),
        "assistant_message": _str(doc.get("assistant_message"), 4000) or "Here is a draft.",
        "change_cards": _cards(doc.get("change_cards")),
        "needs_clarification": clarify,
        "clarification_question": _str(doc.get("clarification_question"), 1000),
        "clarification_options": [
            {"id": f"option_{i + 1}", "label": label[:120]} for i, label in enumerate(labels)
        ],
        "warnings": [],
    }
