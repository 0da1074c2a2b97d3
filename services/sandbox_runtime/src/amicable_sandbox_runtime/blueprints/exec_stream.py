"""``WS /v1/exec/stream``: a command's output as it arrives, then its exit."""

from __future__ import annotations

import json

import trio
from amicable_protocol import structure, unstructure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.http import ErrorBody
from amicable_protocol.runtime import ExecOutput, ExecRequest
from quart import Blueprint, websocket

from amicable_sandbox_runtime import execs
from amicable_sandbox_runtime.errors import InvalidRequest, RuntimeApiError

from ._shared import services

_FIRST_FRAME_TIMEOUT_S = 30.0

blueprint = Blueprint("exec_stream", __name__)


def _request(first: str | bytes) -> ExecRequest:
    try:
        return structure(json.loads(first), ExecRequest, strict=True)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InvalidRequest(f"first frame is not a JSON exec request: {exc}") from None
    except ProtocolError as exc:
        raise InvalidRequest(exc.message) from None


@blueprint.websocket("/v1/exec/stream")
async def exec_stream() -> None:
    """First frame ``ExecRequest``; then ``ExecOutput`` frames, a last ``ExecExit`` frame and
    close 1000. A bad first frame is answered with an ``ErrorBody`` frame and close 1003.

    Cancellation: a client that goes away cancels the command (its process group is killed).
    """
    config, jail = services().config, services().jail
    first: str | bytes = ""
    with trio.move_on_after(_FIRST_FRAME_TIMEOUT_S):
        first = await websocket.receive()
    try:
        body = _request(first)
        cwd = execs.resolve_cwd(jail, body.cwd)
    except RuntimeApiError as exc:
        await websocket.send(json.dumps(unstructure(ErrorBody(exc.code, exc.detail))))
        await websocket.close(1008 if exc.status == 401 else 1003)
        return

    async def send(stream: execs.Stream, data: str) -> None:
        await websocket.send(json.dumps(unstructure(ExecOutput(stream=stream, data=data))))

    done = await execs.run_command(
        body,
        cwd=cwd,
        default_timeout_s=config.exec_timeout_s,
        max_output_chars=config.exec_max_output_chars,
        on_output=send,
    )
    await websocket.send(json.dumps(unstructure(done)))
    await websocket.close(1000)
