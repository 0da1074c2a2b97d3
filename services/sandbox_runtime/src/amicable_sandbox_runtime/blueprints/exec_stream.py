"""``WS /v1/exec/stream``: a command's output as it arrives, then its exit."""

from __future__ import annotations

import json

import trio
from amicable_protocol import unstructure
from amicable_protocol.http import ErrorBody
from amicable_protocol.runtime import ExecOutput, ExecRequest
from quart import Blueprint, websocket

from amicable_sandbox_runtime import execs
from amicable_sandbox_runtime.errors import RuntimeApiError
from amicable_sandbox_runtime.fastpath import decode_body

from ._shared import services

_FIRST_FRAME_TIMEOUT_S = 30.0

blueprint = Blueprint("exec_stream", __name__)


@blueprint.websocket("/v1/exec/stream")
async def exec_stream() -> None:
    """First frame ``ExecRequest``; then ``ExecOutput`` frames, a last ``ExecExit`` frame and
    close 1000. A bad first frame, or a command that cannot start, is answered with an
    ``ErrorBody`` frame (its code: ``invalid_request``, ``command_too_long``,
    ``path_too_long``, ``exec_failed`` …) and close 1003 (1011 for ``exec_failed``).

    Cancellation: a client that goes away cancels the command (its process group is killed).
    """
    config, jail = services().config, services().jail
    first: str | bytes = ""
    with trio.move_on_after(_FIRST_FRAME_TIMEOUT_S):
        first = await websocket.receive()

    async def send(stream: execs.Stream, data: str) -> None:
        await websocket.send(json.dumps(unstructure(ExecOutput(stream=stream, data=data))))

    try:
        body = decode_body(first, ExecRequest, what="first frame")
        done = await execs.run_command(
            body,
            cwd=execs.resolve_cwd(jail, body.cwd),
            default_timeout_s=config.exec_timeout_s,
            max_output_chars=config.exec_max_output_chars,
            on_output=send,
        )
    except RuntimeApiError as exc:  # raised before the command ran: nothing was sent yet
        await websocket.send(json.dumps(unstructure(ErrorBody(exc.code, exc.detail))))
        await websocket.close(1008 if exc.status == 401 else 1011 if exc.status >= 500 else 1003)
        return
    await websocket.send(json.dumps(unstructure(done)))
    await websocket.close(1000)
