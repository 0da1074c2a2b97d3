"""``load_json``: the strict JSON reader of every peer (bodies and frames)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from amicable_protocol import MAX_JSON_DEPTH, ProtocolError, decode_client_frame, load_json


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        ('"\\ud83d\\ude00"', "😀"),  # an escaped pair is one code point
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text
        (_nested(MAX_JSON_DEPTH), None),
        ('{"a": ' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH, None),
        ('["[[[[", "{{{{"]', ["[[[[", "{{{{"]),
    ],
)
def test_accepts_json(data: str | bytes, value: Any) -> None:
    loaded = load_json(data)
    if value is not None:
        assert loaded == value
    else:
        assert loaded == json.loads(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_nested(MAX_JSON_DEPTH + 1), "body is nested too deeply (more than 64 levels)"),
        ('{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), "body is nested too"),
        ("[" * 100_000, "body is nested too deeply"),
        (b'{"a": "\xff"}', "body is not valid JSON: not UTF-8 (byte 7)"),
        (b'{"a": "\xed\xa0\x80"}', "body is not valid JSON: not UTF-8"),  # an encoded surrogate
        ('"\\ud800"'.encode("utf-16"), "body is not valid JSON: not UTF-8"),
        ('{"a": "\\ud800"}', "body contains a lone surrogate"),
        ('{"a": "x\\uDFFFy"}', "body contains a lone surrogate"),
        ('{"\\udc00": 1}', "body contains a lone surrogate"),
        ('["ok", ["\\ud83d"]]', "body contains a lone surrogate"),
        ('"\ud800"', "body contains a lone surrogate"),  # already text: a raw surrogate
        ("NaN", "body is not valid JSON: NaN is not a JSON number"),
        ("[-Infinity]", "body is not valid JSON: -Infinity is not a JSON number"),
        ("1e400", "body is not valid JSON: number out of range: 1e400"),
        ("{", "body is not valid JSON: Expecting property name"),
        (b"", "body is not valid JSON: Expecting value"),
    ],
)
def test_refuses_what_is_not_json(data: str | bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        load_json(data)
    assert info.value.code == "invalid_json"
    assert info.value.message.startswith(message), info.value.message


def test_the_limit_and_the_name_are_parameters() -> None:
    assert load_json(_nested(3), max_depth=3) == [[[]]]
    with pytest.raises(ProtocolError, match=r"^frame is nested too deeply"):
        load_json(_nested(4), what="frame", max_depth=3)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "user", "data": {"session_id": "s", "text": "\\ud800"}}',
        '{"type": "ping", "data": {"x": ' + _nested(100) + "}}",
    ],
)
def test_frames_are_read_by_the_same_rules(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(frame)
    assert info.value.code == "invalid_json"
