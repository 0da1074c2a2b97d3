"""Bad input at the agent's HTTP edge: every error is a JSON ``{error, detail}`` body with
the status that says what happened, and nothing is stored.

The malformed-body matrix reads the route table from the app itself (as
``test_identity_isolation.py`` does), so a new route that takes a body cannot be forgotten.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.auth.config import AuthConfig
from amicable_agent.auth.origins import OriginPolicy
from amicable_agent.config import AgentConfig
from amicable_agent.http.app import create_public_app
from amicable_agent.http.state import AppState
from quart import Response
from quart_trio import QuartTrio
from werkzeug import exceptions as wz

#: Every /api route that takes a JSON body -> a body it accepts.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/projects"): {"name": "Mine", "prompt": "a todo app"},
    ("PATCH", "/api/projects/<project_id>"): {"name": "Renamed"},
    ("POST", "/api/projects/<project_id>/members"): {"email": "bob@example.com", "role": "editor"},
    ("PUT", "/api/sandbox/<project_id>/write"): {"path": "/src/a.txt", "content": "x"},
    ("POST", "/api/sandbox/<project_id>/mkdir"): {"path": "/made"},
    ("POST", "/api/sandbox/<project_id>/create"): {
        "path": "/b.txt",
        "kind": "file",
        "content": "b",
    },
    ("POST", "/api/sandbox/<project_id>/rename"): {"from": "/src/App.tsx", "to": "/src/B.tsx"},
    ("POST", "/api/sandbox/<project_id>/checkpoints/<sha>/restore"): {},
    ("POST", "/api/projects/<project_id>/git/sync"): {"commit_message": "save"},
    ("POST", "/api/projects/<project_id>/git/pull"): {},
    ("POST", "/api/tokens"): {"name": "ci"},
    ("PUT", "/api/admin/users/<sub>/budget"): {"daily_usd": 5},
    ("POST", "/api/db/<project_id>/schema/review"): {"draft": {"tables": []}},
    ("POST", "/api/db/<project_id>/schema/apply"): {"draft": {"tables": []}},
    ("POST", "/api/db/<project_id>/schema/intent"): {"intent_text": "add a table"},
    ("POST", "/api/db/<project_id>/tables/<table>/rows"): {"values": {"name": "a"}},
    ("PATCH", "/api/db/<project_id>/tables/<table>/rows"): {"key": {"id": 1}, "values": {}},
}

#: Nested deeper than the 64 levels a body may have, but not so deep that Python's parser
#: notices (it gives up near 1,000).
_DEEP = "[" * 100 + "]" * 100


def _raw(body: dict[str, Any], extra: str) -> bytes:
    """``body`` as JSON text with ``extra`` (``"key": value`` text) added as its last key."""
    text = json.dumps(body)
    return (text[:-1] + (", " if body else "") + extra + "}").encode()


def _surrogates(body: dict[str, Any]) -> bytes:
    """``body`` with every string value (and one more key) a lone surrogate, escaped."""
    spoiled = {k: "\ud800" if isinstance(v, str) else v for k, v in body.items()}
    return json.dumps({**spoiled, "\udc00": 1}).encode()


def malformed(body: dict[str, Any]) -> dict[str, bytes]:
    """Bodies that are not acceptable JSON, each otherwise shaped like ``body``."""
    return {
        "nested 100 deep": _raw(body, f'"extra": {_DEEP}'),
        "nested 100,000 deep": b"[" * 100_000,
        "invalid UTF-8": _raw(body, '"extra": "XX"').replace(b'"XX"', b'"\xff\xfe"'),
        "lone surrogates": _surrogates(body),
        "NaN": _raw(body, '"extra": NaN'),
        "truncated": json.dumps(body).encode()[:-1],
    }


def _route_table() -> set[tuple[str, str]]:
    state = AppState(  # only to build the app and read its url_map
        config=AgentConfig(), store=None, backend=None, manager=None, background=None,  # type: ignore[arg-type]
        access=None, policy=OriginPolicy(AuthConfig()),  # type: ignore[arg-type]
    )  # fmt: skip
    found = set()
    for rule in create_public_app(state).url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            found.update(
                (m, rule.rule) for m in rule.methods or () if m in ("POST", "PUT", "PATCH")
            )
    return found


def test_the_matrix_covers_every_api_route_that_takes_a_body() -> None:
    assert _route_table() == set(BODIES)


def test_the_invalid_utf8_body_is_invalid_utf8() -> None:
    raw = malformed({"name": "x"})["invalid UTF-8"]
    assert b"\xff\xfe" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def _url(rule: str, project_id: str) -> str:
    values = {"project_id": project_id, "sha": "a" * 40, "sub": "local", "table": "todos"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def _snapshot(api: Any, pid: str) -> tuple[Any, ...]:
    c = api.client
    return (
        (await c.get("/api/projects")).json(),
        (await c.get(f"/api/projects/{pid}")).json(),
        (await c.get(f"/api/projects/{pid}/members")).json(),
        _files(api.workspaces),
    )


def assert_json_error(answer: Any, status: int, code: str) -> dict[str, Any]:
    """The answer is ``status`` with exactly ``{error: code, detail: <text>}`` as JSON."""
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/json", answer.text[:300]
    body = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def test_malformed_bodies_are_400_invalid_json_everywhere_and_change_nothing(
    api: Any,
) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
    made = await c.post(
        f"/api/sandbox/{pid}/create", json={"path": "/src/App.tsx", "kind": "file", "content": "v1"}
    )
    assert made.status_code == 200
    before = await _snapshot(api, pid)
    wrong = []
    for (method, rule), body in sorted(BODIES.items()):
        for name, raw in malformed(body).items():
            answer = await c.request(
                method, _url(rule, pid), content=raw, headers={"Content-Type": "application/json"}
            )
            try:
                assert_json_error(answer, 400, "invalid_json")
            except (AssertionError, ValueError):
                wrong.append((method, rule, name, answer.status_code, answer.text[:80]))
    assert wrong == []
    assert await _snapshot(api, pid) == before


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"[" * 65 + b"]" * 65, "nested too deeply (more than 64 levels)"),
        (b'{"name": "\xff"}', "not UTF-8"),
        (b'{"name": "\\udfff"}', "lone surrogate"),
        (b'{"name": "\\ud83d"}', "lone surrogate"),
    ],
)
async def test_invalid_json_says_what_is_wrong(api: Any, raw: bytes, detail: str) -> None:
    answer = await api.client.post("/api/projects", content=raw)
    assert detail in assert_json_error(answer, 400, "invalid_json")["detail"]


async def test_what_json_allows_is_accepted(api: Any) -> None:
    c = api.client
    deep = "[" * 63 + "]" * 63  # 64 levels with the body object itself
    raw = ('{"name": "\\ud83d\\ude00 Shop", "x": ' + deep + "}").encode()
    made = await c.post("/api/projects", content=raw)
    assert made.status_code == 200, made.text
    assert made.json()["name"] == "😀 Shop"


async def test_prompt_over_the_limit_is_413_and_creates_nothing(api: Any) -> None:
    c = api.client
    too_long = await c.post("/api/projects", json={"name": "Big", "prompt": "x" * 100_001})
    assert "100000" in assert_json_error(too_long, 413, "prompt_too_long")["detail"]
    assert (await c.get("/api/projects")).json() == {"projects": []}
    fits = await c.post("/api/projects", json={"name": "Big", "prompt": "é" * 100_000})
    assert fits.status_code == 200
    assert fits.json()["prompt"] == "é" * 100_000


async def test_project_names_are_clipped_to_80(api: Any) -> None:
    made = (await api.client.post("/api/projects", json={"name": "n" * 500})).json()
    assert made["name"] == "n" * 80


@pytest.mark.parametrize(
    "path",
    [
        "/" + "a" * 256,  # one segment over 255 bytes
        "/src/" + "é" * 128,  # 256 bytes in UTF-8, 128 characters
        "/" + "/".join(["d" * 200] * 21),  # 4,221 bytes
    ],
)
async def test_long_paths_are_400_path_too_long(api: Any, path: str) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Paths"})).json()["project_id"]
    base = f"/api/sandbox/{pid}"
    before = _files(api.workspaces)
    answers = [
        await c.put(base + "/write", json={"path": path, "content": "x"}),
        await c.post(base + "/create", json={"path": path, "kind": "file"}),
        await c.post(base + "/mkdir", json={"path": path}),
        await c.post(base + "/rename", json={"from": "/a.txt", "to": path}),
        await c.get(base + "/read", params={"path": path}),
        await c.get(base + "/ls", params={"path": path}),
        await c.delete(base + "/rm", params={"path": path}),
    ]
    for answer in answers:
        assert_json_error(answer, 400, "path_too_long")
    assert _files(api.workspaces) == before


async def test_paths_at_the_limits_work(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Paths"})).json()["project_id"]
    name = "/" + "a" * 251 + ".txt"  # 255 bytes
    wrote = await c.put(f"/api/sandbox/{pid}/write", json={"path": name, "content": "x"})
    assert wrote.status_code == 200, wrote.text


async def _declared_too_big(port: int) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST a head declaring a body over the 32 MiB limit (and no body): the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /api/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/json\r\nContent-Length: 33554433\r\n\r\n"
        )
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
            while len(body) < int(headers[b"content-length"]):
                body += await stream.receive_some(65536)
    return int(lines[0].split(b" ")[1]), headers, body


async def test_http_errors_of_the_framework_are_json(api: Any) -> None:
    c = api.client
    not_allowed = await c.put("/api/projects", json={})
    assert_json_error(not_allowed, 405, "method_not_allowed")
    assert "POST" in not_allowed.headers["allow"]
    status, headers, body = await _declared_too_big(api.ports.public)
    assert (status, headers[b"content-type"]) == (413, b"application/json")
    assert json.loads(body)["error"] == "too_large"
    assert_json_error(await c.get("/api/no/such/route"), 404, "not_found")
    assert (await c.get("/api/projects")).json() == {"projects": []}


async def test_the_internal_port_answers_json_errors(api: Any) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=api.internal, trust_env=False) as internal:
        assert_json_error(await internal.get("/no/such/route"), 404, "not_found")
        assert_json_error(
            await internal.post("/internal/preview/resolve"), 405, "method_not_allowed"
        )


async def test_an_unexpected_error_is_a_logged_500_without_the_traceback(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Boom"})).json()["project_id"]

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals /etc/agent.conf")

    monkeypatch.setattr(api.backend, "ensure", broken)
    with caplog.at_level(logging.ERROR):
        answer = await c.get(f"/api/sandbox/{pid}/ls")
    body = assert_json_error(answer, 500, "internal_error")
    assert "secret" not in answer.text
    assert "Traceback" not in answer.text
    logged = [r for r in caplog.records if r.exc_info and "secret internals" in str(r.exc_info[1])]
    assert logged, "the 500 is logged with its exception"
    assert "log" in body["detail"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (wz.BadRequest(), 400, "bad_request"),
        (wz.NotFound(), 404, "not_found"),
        (wz.MethodNotAllowed(["GET"]), 405, "method_not_allowed"),
        (wz.RequestTimeout(), 408, "request_timeout"),
        (wz.Conflict(), 409, "conflict"),
        (wz.RequestEntityTooLarge(), 413, "too_large"),
        (wz.UnsupportedMediaType(), 415, "unsupported_media_type"),
        (wz.UnprocessableEntity(), 422, "unprocessable_entity"),
        (wz.InternalServerError(), 500, "internal_error"),
    ],
)
async def test_every_http_exception_becomes_a_json_error(
    error: wz.HTTPException, status: int, code: str
) -> None:
    from amicable_agent.http.bodies import install_error_handlers

    app = QuartTrio(__name__)
    install_error_handlers(app)

    @app.get("/fail")
    async def fail() -> Response:
        raise error

    answer = await app.test_client().get("/fail")
    assert answer.status_code == status
    assert answer.mimetype == "application/json"
    body = await answer.get_json()
    assert body["error"] == code
    assert body["detail"]
    assert "<" not in body["detail"]  # text, not werkzeug's HTML page


@pytest.mark.parametrize(
    ("status", "code", "answer"),
    [
        (400, "path_too_long", (400, "path_too_long")),
        (404, "not_found", (404, "not_found")),
        (408, "http_error", (408, "http_error")),
        (409, "conflict", (409, "conflict")),
        (413, "too_large", (413, "too_large")),  # content over AMICABLE_MAX_FILE_BYTES
        (401, "unauthorized", (502, "sandbox_unreachable")),  # our token, not the caller's
        (500, "http_error", (502, "sandbox_unreachable")),
        (0, "unreachable", (502, "sandbox_unreachable")),
        (0, "timeout", (504, "sandbox_timeout")),
    ],
)
def test_the_file_api_keeps_the_runtimes_codes(
    status: int, code: str, answer: tuple[int, str]
) -> None:
    from amicable_agent.errors import RuntimeClientError
    from amicable_agent.http.files import _translate

    translated = _translate(RuntimeClientError(status, code, "why"))
    assert (translated.status, translated.code) == answer
