"""The exported JSON Schema: valid, deterministic, complete, and derived from the classes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from amicable_protocol import messages
from amicable_protocol.schema import json_schema, main, render


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_render_is_deterministic_and_sorted() -> None:
    text = render()
    assert text == render()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_every_message_type_has_an_envelope_in_the_tagged_unions() -> None:
    defs = json_schema()["$defs"]
    for union, table in (
        ("ClientMessage", messages._CLIENT_DATA),
        ("ServerMessage", messages.SERVER_DATA),
    ):
        refs = [variant["$ref"].rsplit("/", 1)[1] for variant in defs[union]["oneOf"]]
        consts = sorted(defs[name]["properties"]["type"]["const"] for name in refs)
        assert consts == sorted(str(t) for t in table)
    assert defs["MessageType"]["enum"] == [str(t) for t in messages.MessageType]


def test_fields_map_to_json_types() -> None:
    defs = json_schema()["$defs"]
    init = defs["InitData"]
    assert init["required"] == ["session_id"]
    assert init["properties"]["permission_mode"] == {
        "anyOf": [
            {"type": "string", "enum": ["default", "accept_edits", "bypass"]},
            {"type": "null"},
        ],
        "default": None,
    }
    assert defs["TextBlock"]["required"] == ["text", "type"]  # discriminator is required
    assert defs["TextBlock"]["properties"]["type"] == {
        "type": "string",
        "const": "text",
        "default": "text",
    }
    assert defs["GlobResult"]["properties"]["paths"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    assert defs["ExecRequest"]["properties"]["env"] == {
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "null"},
        ],
        "default": None,
    }
    assert defs["HitlPending"]["properties"]["request"] == {"$ref": "#/$defs/HitlRequest"}
    assert defs["ErrorBody"]["required"] == ["error"]
    assert defs["Usage"]["properties"]["cost_usd"] == {"type": "number", "default": 0.0}


def test_renamed_fields_use_their_json_key() -> None:
    move = json_schema()["$defs"]["MoveRequest"]
    assert sorted(move["properties"]) == ["from", "to"]
    assert move["required"] == ["from", "to"]


def test_server_envelope_requires_the_whole_envelope() -> None:
    ping = json_schema()["$defs"]["ServerPingMessage"]
    assert ping["required"] == ["data", "id", "session_id", "timestamp", "type"]
    client_ping = json_schema()["$defs"]["ClientPingMessage"]
    assert client_ping["required"] == ["data", "type"]


def test_cli_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "protocol.schema.json"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
    assert main([]) == 0
    assert capsys.readouterr().out == render()
