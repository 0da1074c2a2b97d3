"""Golden JSON files: every message type and runtime body, round-tripped and schema-checked.

Layout (the editor's vitest reads the same files):
    golden/client/<type>[.<variant>].json   canonical client frames
    golden/editor/<type>[.<variant>].json   frames as the existing editor sends them
    golden/server/<type>[.<variant>].json   server frames, exactly as we encode them
    golden/{runtime,http,preview}/<Class>[.<variant>].json   HTTP API bodies
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from amicable_protocol import http, messages, runtime
from amicable_protocol._converter import strict_converter, structure, unstructure
from amicable_protocol.messages import (
    SERVER_DATA,
    ClientMessage,
    HitlDecision,
    HitlResponse,
    HitlResponseData,
    InitData,
    MessageType,
    PingData,
    RuntimeErrorData,
    RuntimeErrorInfo,
    TextBlock,
    UiContext,
    UserData,
    decode_client_frame,
    decode_server_message,
    encode_server_message,
)
from amicable_protocol.schema import json_schema

GOLDEN = Path(__file__).parent / "golden"
SESSION = "0b7e6c2a-5d1f-4c8e-9a3b-2f6d8e1c4a70"
SCHEMA = json_schema()


def _files(kind: str) -> list[Path]:
    return sorted((GOLDEN / kind).glob("*.json"))


def _type_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def _validate(instance: Any, definition: str) -> None:
    schema = {**SCHEMA, "$ref": f"#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema).validate(instance)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_every_message_type_has_golden_files() -> None:
    assert {_type_of(p) for p in _files("client")} == {str(t) for t in messages._CLIENT_DATA}
    assert {_type_of(p) for p in _files("server")} == {str(t) for t in SERVER_DATA}


@pytest.mark.parametrize("path", _files("client"), ids=_ids(_files("client")))
def test_client_golden_decodes_losslessly(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    raw = json.loads(text)
    msg = decode_client_frame(text)
    assert str(msg.type) == _type_of(path) == raw["type"]
    assert msg.id == raw["id"]
    assert msg.timestamp == raw["timestamp"]
    assert msg.session_id == SESSION
    # Every key in the file was understood (the lenient decoder would drop a misspelt one).
    assert _without_none(unstructure(msg.data)) == raw["data"]
    _validate(raw, "ClientMessage")


@pytest.mark.parametrize("path", _files("server"), ids=_ids(_files("server")))
def test_server_golden_round_trips_exactly(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    raw = json.loads(text)
    msg = decode_server_message(text)
    assert str(msg.type) == _type_of(path)
    assert json.loads(encode_server_message(msg)) == raw
    assert decode_server_message(encode_server_message(msg)) == msg
    _validate(raw, "ServerMessage")


EDITOR_EXPECTED: dict[str, ClientMessage] = {
    "init.json": ClientMessage(
        type=MessageType.INIT,
        data=InitData(session_id=SESSION, permission_mode="default", thinking_level="none"),
        id="1f0c2b9e-8f57-4c1c-9d3a-0f6f3b2a1c11",
        timestamp=1764201600000,
    ),
    "user.json": ClientMessage(
        type=MessageType.USER,
        data=UserData(
            session_id=SESSION,
            text="Build a todo app",
            ui_context=UiContext(active_view="preview", preview_path="/", device_type="desktop"),
        ),
        id="2a1d3c4b-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        timestamp=1764201601000,
    ),
    "user.legacy_nested.json": ClientMessage(
        type=MessageType.USER,
        data=UserData(session_id=SESSION, text="Build a todo app"),
        timestamp=1764201601000,
    ),
    "user.unknown_keys.json": ClientMessage(
        type=MessageType.USER,
        data=UserData(
            session_id=SESSION,
            text="Hi",
            content_blocks=(TextBlock(text="Hi"),),  # the "file" block is dropped
            ui_context=UiContext(active_view="code"),
        ),
        id="3b2e4d5c-6f70-4b8c-9dae-1f203a4b5c6d",
        timestamp=1764201601500,
    ),
    "ping.json": ClientMessage(
        type=MessageType.PING,
        data=PingData(session_id=SESSION),
        id="4c3f5e6d-7081-4c9d-8ebf-2a314b5c6d7e",
        timestamp=1764201602000,
    ),
    "ping.top_level_session.json": ClientMessage(
        type=MessageType.PING, data=PingData(session_id=SESSION), timestamp=1764201602000
    ),
    "runtime_error.top_level_error.json": ClientMessage(
        type=MessageType.RUNTIME_ERROR,
        data=RuntimeErrorData(
            session_id=SESSION,
            error=RuntimeErrorInfo(
                kind="runtime_bridge_missing",
                message="No runtime bridge answered the probe",
                fingerprint="rt_bridge",
                extra={"trigger": "update_completed", "probe_id": "p-1"},
            ),
        ),
        timestamp=1764201602500,
    ),
    "hitl_response.json": ClientMessage(
        type=MessageType.HITL_RESPONSE,
        data=HitlResponseData(
            session_id=SESSION,
            interrupt_id="int-7f3a",
            response=HitlResponse(
                decisions=(HitlDecision(type="reject", message="Dismissed by user"),)
            ),
        ),
        id="5d4a6f7e-8192-4dae-9fc0-3b425c6d7e8f",
        timestamp=1764201603000,
    ),
}


def test_every_editor_frame_has_an_expectation() -> None:
    assert sorted(EDITOR_EXPECTED) == _ids(_files("editor"))


@pytest.mark.parametrize("name", sorted(EDITOR_EXPECTED))
def test_editor_frames_decode(name: str) -> None:
    frame = (GOLDEN / "editor" / name).read_bytes()  # bytes frames are accepted too
    assert decode_client_frame(frame) == EDITOR_EXPECTED[name]


def _body_classes() -> dict[str, type[Any]]:
    modules = [("runtime", runtime), ("http", http)]
    if importlib.util.find_spec("amicable_protocol.preview") is not None:
        modules.append(("preview", importlib.import_module("amicable_protocol.preview")))
    found: dict[str, type[Any]] = {}
    for kind, module in modules:
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if attrs.has(cls) and cls.__module__ == module.__name__:
                found[f"{kind}/{name}"] = cls
    return found


BODY_FILES = sorted(
    p.relative_to(GOLDEN).with_suffix("").as_posix()
    for kind in ("runtime", "http", "preview")
    for p in _files(kind)
)


def test_every_runtime_and_http_body_has_a_golden_file() -> None:
    assert set(_body_classes()) <= {f.split(".", 1)[0] for f in BODY_FILES}


@pytest.mark.parametrize("name", BODY_FILES)
def test_body_golden_round_trips_strictly(name: str) -> None:
    cls = _body_classes()[name.split(".", 1)[0]]
    raw = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    obj = structure(raw, cls, strict=True)
    assert json.loads(json.dumps(strict_converter.unstructure(obj))) == raw
    _validate(raw, cls.__name__)
