"""Property tests: decoding anything yields a message or a ProtocolError, nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amicable_protocol.errors import ProtocolError
from amicable_protocol.messages import (
    ClientMessage,
    ServerMessage,
    decode_client_frame,
    decode_server_message,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOLDEN = Path(__file__).parent / "golden"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["init", "user", "ping", "cancel", "runtime_error", "hitl_response"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "data", "session_id", "id", "timestamp", "error", "text"])
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _golden(kind: str) -> list[Any]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((GOLDEN / kind).glob("*.json"))
    ]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


# Values that break naive decoders (json.dumps writes inf/nan as Infinity/NaN, which Python's
# json.loads accepts); drawn often so short runs still hit them.
edge = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 1e308, 2**64, -1, 0, 0.5, "", True, None, [], {}]
)
scalars = edge | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
field_names = st.sampled_from(
    ["session_id", "text", "permission_mode", "interrupt_id", "error", "response", "type"]
)
datas = st.none() | st.dictionaries(field_names, scalars | json_values, max_size=4) | json_values
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(["init", "user", "ping", "cancel", "runtime_error", "hitl_response"])},
    optional={
        "data": datas,
        "id": scalars,
        "timestamp": scalars,
        "session_id": scalars,
        "error": json_values,
    },
)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    """A golden frame with one sub-value replaced by arbitrary JSON."""
    frame = draw(st.sampled_from(_golden(kind)))
    path = draw(st.sampled_from(_paths(frame)))
    return _replace(frame, path, draw(scalars | json_values))


def _decodes_or_rejects(frame: str | bytes) -> None:
    try:
        msg = decode_client_frame(frame)
    except ProtocolError as exc:
        error = exc
    else:
        assert isinstance(msg, ClientMessage)
        return
    assert error.code in {"invalid_json", "unknown_message_type", "invalid_field", "too_large"}
    assert error.message


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _decodes_or_rejects(json.dumps(value))


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(frame: bytes) -> None:
    _decodes_or_rejects(frame)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(frame: str) -> None:
    _decodes_or_rejects(frame)


@FUZZ
@given(envelopes)
def test_arbitrary_envelopes(value: Any) -> None:
    _decodes_or_rejects(json.dumps(value))


@FUZZ
@given(mutated("client") | mutated("editor"))
def test_mutated_client_frames(value: Any) -> None:
    _decodes_or_rejects(json.dumps(value))


@FUZZ
@given(mutated("server") | json_values)
def test_mutated_server_frames(value: Any) -> None:
    try:
        msg = decode_server_message(json.dumps(value))
    except ProtocolError:
        return
    assert isinstance(msg, ServerMessage)
