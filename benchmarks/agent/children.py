"""Child processes of the agent benchmark (see run.py): the fake model API (Messages or Chat
Completions) and the WebSocket clients. Kept apart from run.py so that these processes stay
light (no anthropic SDK import) and their CPU is never the agent's.

Usage (run.py starts these itself)::

    python benchmarks/agent/children.py serve-fake --deltas 200 --interval 0.01 [--provider openai]
    python benchmarks/agent/children.py ws-clients ws://127.0.0.1:PORT/ --sessions 50
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
import uuid

import trio
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text
from amicable_testing.fake_openai import FakeOpenAI

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it


async def serve_fake(deltas: int, interval_s: float, provider: str = "anthropic") -> None:
    """Run the fake API (child process mode); prints its base URL on stdout."""
    text = "abcd" * deltas
    fake_class = FakeOpenAI if provider == "openai" else FakeAnthropic
    fake = fake_class(responder=lambda body: Reply([Text(text, chunk=4)], delay_s=interval_s))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)
        print(url, flush=True)


async def ws_clients(url: str, sessions: int, kind: str) -> None:
    """Child-process mode: run the WS clients, print ``[sid, len(text), t]`` per partial.

    ``kind`` ``raw`` (default): a lean wsproto client per socket that stamps each read as the
    bytes arrive, before any frame or JSON parsing; ``trio-websocket``: the library client,
    stamped when ``get_message`` returns (adds its reader task hop and per-message costs).
    """
    seen: list[tuple[str, int, float, float | None]] = []

    def record(sid: str, raw: str, now: float, kernel: float | None = None) -> bool:
        msg = json.loads(raw)
        if msg["type"] == "agent_partial":
            seen.append((sid, len(msg["data"]["text"]), now, kernel))
        return bool(msg["type"] == "update_completed")

    def init(sid: str) -> str:
        return json.dumps({"type": "init", "data": {"session_id": sid}})

    def user(sid: str) -> str:
        return json.dumps({"type": "user", "data": {"session_id": sid, "text": "go"}})

    async def library_client() -> None:
        from trio_websocket import open_websocket_url

        sid = str(uuid.uuid4())
        async with open_websocket_url(url) as ws:
            await ws.send_message(init(sid))
            while json.loads(await ws.get_message())["type"] != "init":
                pass
            await ws.send_message(user(sid))
            while True:
                raw = await ws.get_message()
                if record(sid, str(raw), time.perf_counter()):
                    return

    async def raw_client() -> None:
        from urllib.parse import urlsplit

        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Ping, Request, TextMessage

        sid = str(uuid.uuid4())
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        ws = WSConnection(ConnectionType.CLIENT)
        with trio.fail_after(300):
            stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path or "/")))
            buffer: list[str] = []
            phase = "handshake"
            # The kernel stamps each read's data on arrival (SO_TIMESTAMPNS, CLOCK_REALTIME):
            # that separates the agent + loopback from this process's own scheduling.
            sock = stream.socket
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            while True:
                with trio.fail_after(300):
                    data, ancillary, _, _ = await sock.recvmsg(1 << 16, socket.CMSG_SPACE(16))
                now = time.perf_counter()
                kernel = None
                for level, kind, cdata in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        kernel = sec + nsec / 1e9 - (time.time() - time.perf_counter())
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        await stream.send_all(ws.send(TextMessage(init(sid))))
                        phase = "init"
                    elif isinstance(event, Ping):
                        await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, TextMessage):
                        buffer.append(event.data)
                        if not event.message_finished:
                            continue
                        raw, buffer = "".join(buffer), []
                        if phase == "init":
                            if json.loads(raw)["type"] == "init":
                                await stream.send_all(ws.send(TextMessage(user(sid))))
                                phase = "turn"
                        elif record(sid, raw, now, kernel):
                            return

    client = raw_client if kind == "raw" else library_client
    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            nursery.start_soon(client)
    for item in seen:
        print(json.dumps(item))
    print(f"client process CPU {time.process_time():.2f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    fake = sub.add_parser("serve-fake", help="run the fake API; prints its base URL")
    fake.add_argument("--deltas", type=int, default=200, help="text deltas per reply")
    fake.add_argument("--interval", type=float, default=0.01, help="seconds between deltas")
    fake.add_argument("--provider", choices=("anthropic", "openai"), default="anthropic")
    clients = sub.add_parser(
        "ws-clients", help="run WebSocket clients; prints one line per partial"
    )
    clients.add_argument("url")
    clients.add_argument("--sessions", type=int, default=50)
    clients.add_argument("--client", choices=("raw", "trio-websocket"), default="raw")
    args = parser.parse_args()
    if args.mode == "serve-fake":
        trio.run(serve_fake, args.deltas, args.interval, args.provider)
    else:
        trio.run(ws_clients, args.url, args.sessions, args.client)


if __name__ == "__main__":
    main()
