"""ProtocolError: every code occurs, and messages name the field in plain words."""

from __future__ import annotations

import json
from typing import Any

import pytest
from amicable_protocol._converter import structure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.messages import (
    MAX_FRAME_BYTES,
    decode_client_frame,
    decode_server_message,
)
from amicable_protocol.runtime import ExecRequest, MoveRequest

S = "s-1"


def _error(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(frame)
    return info.value


def _user(**data: Any) -> str:
    return json.dumps({"type": "user", "data": {"session_id": S, **data}})


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{", "invalid_json", "frame is not valid JSON: Expecting property name"),
        (b"\xff\xfe\xfa", "invalid_json", "frame is not valid JSON"),
        ("[1, 2]", "invalid_json", "frame must be a JSON object"),
        (
            '{"type": "ping", "timestamp": NaN}',
            "invalid_json",
            "frame is not valid JSON: NaN is not a JSON number",
        ),
        (
            '{"type": "ping", "timestamp": 1e400}',
            "invalid_json",
            "frame is not valid JSON: number out of range: 1e400",
        ),
        ("[" * 100_000, "invalid_json", "frame is nested too deeply"),
        ('{"type": "nope"}', "unknown_message_type", "unknown message type 'nope'"),
        ('{"type": "agent_final"}', "unknown_message_type", "unknown message type 'agent_final'"),
        ('{"data": {}}', "invalid_field", "type must be a string"),
        ('{"type": "ping", "data": []}', "invalid_field", "data must be an object"),
        ('{"type": "ping", "id": 7}', "invalid_field", "id must be a string"),
        ('{"type": "ping", "timestamp": "now"}', "invalid_field", "timestamp must be a number"),
    ],
)
def test_envelope_errors(frame: str | bytes, code: str, message: str) -> None:
    error = _error(frame)
    assert error.code == code
    assert error.message.startswith(message)
    assert str(error) == error.message


def test_too_large() -> None:
    error = _error(" " * (MAX_FRAME_BYTES + 1))
    assert error.code == "too_large"
    assert error.message == f"frame exceeds {MAX_FRAME_BYTES} bytes"


def test_too_large_counts_encoded_bytes() -> None:
    # 4.2M characters of 4 bytes each: under the limit in characters, over it in bytes.
    error = _error(
        json.dumps({"type": "user", "data": {"text": "😀" * 4_200_000}}, ensure_ascii=False)
    )
    assert error.code == "too_large"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            json.dumps({"type": "init", "data": {"session_id": S, "permission_mode": "x"}}),
            "data.permission_mode must be one of 'default', 'accept_edits', 'bypass' (got 'x')",
        ),
        (json.dumps({"type": "init", "data": {}}), "data.session_id is required"),
        (_user(text=5), "data.text must be a string (got 5)"),
        (_user(text=None), "data.text must be a string (got null)"),
        (
            _user(ui_context={"viewport_width": "1280", "database_editor": 1}),
            "data.ui_context.viewport_width must be an integer (got '1280'); "
            "data.ui_context.database_editor must be true or false (got 1)",
        ),
        (_user(ui_context=[]), "data.ui_context must be an object (got an array)"),
        (_user(content_blocks="hi"), "data.content_blocks must be an array (got 'hi')"),
        (
            _user(content_blocks=[{"type": "image", "base64": "AA=="}, 3]),
            "data.content_blocks[0].mime_type is required; "
            "data.content_blocks[1] must be an object (got 3)",
        ),
        (
            json.dumps(
                {
                    "type": "hitl_response",
                    "data": {
                        "session_id": S,
                        "interrupt_id": "i",
                        "response": {"decisions": [{"type": "maybe"}]},
                    },
                }
            ),
            "data.response.decisions[0].type must be one of 'approve', 'edit', 'reject' "
            "(got 'maybe')",
        ),
        (
            json.dumps(
                {
                    "type": "runtime_error",
                    "data": {"session_id": S, "error": {"kind": "k", "message": "m", "ts_ms": 1.5}},
                }
            ),
            "data.error.ts_ms must be an integer (got 1.5)",
        ),
    ],
)
def test_invalid_field_messages_name_the_field(frame: str, message: str) -> None:
    error = _error(frame)
    assert error.code == "invalid_field"
    assert error.message == message


def test_strict_bodies_name_renamed_keys_and_unknown_keys() -> None:
    with pytest.raises(ProtocolError) as info:
        structure({"from": 1, "to": "/b", "mode": "x"}, MoveRequest, strict=True, path="body")
    assert info.value.message == "body.from must be a string (got 1); body has unknown keys: 'mode'"
    with pytest.raises(ProtocolError) as info:
        structure({"command": "ls", "env": {"A": 1}}, ExecRequest, strict=True, path="body")
    assert info.value.message == "body.env['A'] must be a string (got 1)"
    with pytest.raises(ProtocolError) as info:
        structure({"command": "ls", "timeout_s": True}, ExecRequest, strict=True, path="body")
    assert info.value.message == "body.timeout_s must be a number (got true)"


def test_long_values_are_shortened() -> None:
    error = _error(_user(ui_context={"active_view": "x" * 500}))
    assert len(error.message) < 200
    assert error.message.endswith("...)")


def test_server_decoder_errors() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server_message('{"type": "user", "data": {}}')
    assert info.value.code == "unknown_message_type"
    with pytest.raises(ProtocolError) as info:
        decode_server_message('{"type": "usage", "data": {"input_tokens": "1"}}')
    assert info.value.code == "invalid_field"
    assert info.value.message.startswith("data.input_tokens must be an integer (got '1')")


def test_repr_shows_code_and_message() -> None:
    assert (
        repr(_error("{}")) == "ProtocolError(code='invalid_field', message='type must be a string')"
    )


@pytest.mark.parametrize(
    ("field", "limit"), [("tag", 64), ("selector", 1000), ("text", 500), ("source", 500)]
)
def test_a_selected_element_over_its_limits_is_refused(field: str, limit: int) -> None:
    selected = {"tag": "h1", "selector": "#title", field: "x" * (limit + 1)}
    error = _error(_user(text="make it blue", ui_context={"selected_element": selected}))
    assert error.code == "too_large"
    assert error.message == (
        f"data.ui_context.selected_element.{field} has {limit + 1} characters; "
        f"at most {limit} are accepted"
    )
    selected[field] = "x" * limit
    decode_client_frame(_user(text="make it blue", ui_context={"selected_element": selected}))


def test_a_selected_element_needs_a_tag_and_a_selector() -> None:
    error = _error(_user(text="hi", ui_context={"selected_element": {"tag": "h1"}}))
    assert error.code == "invalid_field"
    assert "selected_element.selector" in error.message
