"""Size limits of text fields: a ``user`` text over the limit is refused at decoding, and
what ``init`` echoes is cut to a size every client can take. The length limits of
workspace paths every peer checks (``path_length_problem``)."""

from __future__ import annotations

import json

import pytest
from amicable_protocol import (
    INIT_HISTORY_CHARS,
    INIT_HISTORY_ENTRY_CHARS,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_USER_TEXT_CHARS,
    HistoryEntry,
    ProtocolError,
    UserData,
    check_text,
    clip_text,
    decode_client_frame,
    fit_history,
    path_length_problem,
)


def user_frame(text: str, blocks: list[str] | None = None) -> str:
    data: dict[str, object] = {"session_id": "s", "text": text}
    if blocks is not None:
        data["content_blocks"] = [{"type": "text", "text": b} for b in blocks]
    return json.dumps({"type": "user", "data": data})


def test_user_text_up_to_the_limit_is_accepted() -> None:
    msg = decode_client_frame(user_frame("a" * MAX_USER_TEXT_CHARS))
    assert isinstance(msg.data, UserData)
    assert len(msg.data.text) == MAX_USER_TEXT_CHARS


@pytest.mark.parametrize(
    ("text", "blocks"),
    [("a" * (MAX_USER_TEXT_CHARS + 1), None), ("a" * 60_000, ["b" * 50_000])],
)
def test_user_text_over_the_limit_is_text_too_long(text: str, blocks: list[str] | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(user_frame(text, blocks))
    assert info.value.code == "text_too_long"
    assert info.value.message == (
        f"data.text has {MAX_USER_TEXT_CHARS + 1 if blocks is None else 110_000} characters; "
        f"at most {MAX_USER_TEXT_CHARS} are accepted"
    )


def test_check_and_clip_text() -> None:
    check_text("prompt", "x" * 10, 10)
    with pytest.raises(ProtocolError, match="prompt has 11 characters; at most 10") as info:
        check_text("prompt", "x" * 11, 10)
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError) as info:
        check_text("prompt", "x" * 11, 10, code="text_too_long")
    assert info.value.code == "text_too_long"
    assert clip_text("short", 10) == "short"
    assert clip_text("x" * 20, 10) == "x" * 9 + "…"


def test_fit_history_keeps_the_newest_within_both_budgets() -> None:
    entries = [HistoryEntry(role="user", text=f"{i}:" + "y" * 30_000) for i in range(20)]
    fitted = fit_history(entries)
    assert all(len(e.text) <= INIT_HISTORY_ENTRY_CHARS for e in fitted)
    assert sum(len(e.text) for e in fitted) <= INIT_HISTORY_CHARS
    assert [e.text.split(":")[0] for e in fitted] == ["15", "16", "17", "18", "19"]
    small = [HistoryEntry(role="assistant", text="hi")] * 3
    assert fit_history(small) == tuple(small)


@pytest.mark.parametrize(
    "path",
    [
        "/src/App.tsx",
        "/" + "a" * MAX_NAME_BYTES,
        "/" + "é" * (MAX_NAME_BYTES // 2),  # 254 bytes
        "/".join(["d" * 200] * 20),  # 4,019 bytes
        "x" * 63,
    ],
)
def test_paths_within_the_limits(path: str) -> None:
    assert path_length_problem(path) is None


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/" + "a" * (MAX_NAME_BYTES + 1), "has 256 bytes; at most 255 are allowed in one"),
        ("/src/" + "é" * 128, "has 256 bytes"),
        ("/" + "😀" * 64, "has 256 bytes"),  # 64 characters
        ("/".join(["d" * 200] * 21), f"the path has 4220 bytes; at most {MAX_PATH_BYTES}"),
        ("\ud800" * 100, "has 300 bytes"),  # counted, not refused here
    ],
)
def test_paths_over_the_limits(path: str, problem: str) -> None:
    found = path_length_problem(path)
    assert found is not None
    assert problem in found
