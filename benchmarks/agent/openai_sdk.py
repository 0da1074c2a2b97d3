"""Per-delta cost of the OpenAI path: the agent's lean adapter against the ``openai`` SDK.

The question the providers issue asked: speak Chat Completions through the official
``openai`` package, or through the lean HTTP/1.1 transport the Anthropic path already uses?
Both stream the same replies from the fake Chat Completions server (a child process, so its
CPU is not counted) at ``--sessions`` concurrent streams; printed: CPU seconds per 1,000
deltas of this process for each. The SDK is not a dependency of the agent; install it into
a scratch environment to run this::

    uv venv /tmp/oai && uv pip install --python /tmp/oai openai
    PYTHONPATH=$(ls -d .venv/lib/python3*/site-packages) /tmp/oai/bin/python \\
        benchmarks/agent/openai_sdk.py --sessions 50 --deltas 200 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings

CHILDREN = Path(__file__).with_name("children.py")


async def _fake(
    deltas: int, interval_s: float, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(CHILDREN), "serve-fake", "--deltas", str(deltas),
         "--interval", str(interval_s), "--provider", "openai"],
        stdout=-1, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        task_status.started((await proc.stdout.receive_some(200)).decode().strip())
        await trio.sleep_forever()
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def _lean(url: str, sessions: int) -> int:
    settings = LoopSettings(provider="openai", model="gpt-4.1", api_key="bench", base_url=url)
    client = LlmClient(settings)
    deltas = 0

    async def one() -> None:
        nonlocal deltas

        async def on_text(text: str) -> None:
            nonlocal deltas
            deltas += 1

        await client.stream_message(system="s", messages=[{"role": "user", "content": "go"}],
                                    tools=[], on_text=on_text)  # fmt: skip

    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            nursery.start_soon(one)
    await client.aclose()
    return deltas


async def _sdk(url: str, sessions: int) -> int:
    import openai  # not a dependency: see the module docstring

    client = openai.AsyncOpenAI(api_key="bench", base_url=url, max_retries=0)
    deltas = 0

    async def one() -> None:
        nonlocal deltas
        text = ""
        stream = await client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "go"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                deltas += 1

    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            nursery.start_soon(one)
    await client.close()
    return deltas


async def main(sessions: int, deltas: int, interval_s: float, repeat: int) -> None:
    import openai  # noqa: F401  (imported before the clock starts: not a per-delta cost)

    async with trio.open_nursery() as nursery:
        url = await nursery.start(_fake, deltas, interval_s)
        results: dict[str, list[float]] = {"lean": [], "sdk": []}
        for _ in range(repeat):
            for name, run in (("lean", _lean), ("sdk", _sdk)):
                cpu0 = time.process_time()
                count = await run(url, sessions)
                cpu = time.process_time() - cpu0
                results[name].append(cpu / count * 1000)
                print(f"  {name}: {count} deltas, {cpu:.2f} s CPU = "
                      f"{cpu / count * 1000:.3f} s per 1,000 deltas")  # fmt: skip
        nursery.cancel_scope.cancel()
    lean, sdk = statistics.median(results["lean"]), statistics.median(results["sdk"])
    print(f"openai path, {sessions} streams x {deltas} deltas every {interval_s * 1000:.0f} ms: "
          f"lean adapter {lean:.3f}, openai SDK {sdk:.3f} s CPU per 1,000 deltas "
          f"(median of {repeat}; SDK / lean = {sdk / lean:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.sessions, args.deltas, args.interval, args.repeat)
