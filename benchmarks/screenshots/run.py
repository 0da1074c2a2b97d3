"""Screenshot latency: the agent's warm browser next to a bare ``chromium --screenshot``.

The same page (a small app-like page: a module script rendering a list, a stylesheet, an
image) is served by a loopback site behind the real preview router. Measured in the same run:

  (a) ``chromium --headless --screenshot`` of the preview URL, a new process each time (what
      a tool without a warm browser pays), and
  (b) ``PreviewBrowser.capture`` on the already-started browser (viewport, JPEG, the same
      settle and animation freeze as the tool uses).

Target: (b) / (a) <= 0.5. Usage: python benchmarks/screenshots/run.py [--rounds 5]
Prints medians and the ratio; exits 0 (numbers are for people, not CI).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import trio
from amicable_agent.browser import BrowserConfig, open_preview_browser
from amicable_agent.browser.process import BASE_FLAGS, find_chromium
from amicable_testing.preview_stack import StubSite, open_preview_stack

PAGE = b"""<!doctype html><html><head><title>bench</title><link rel="stylesheet" href="/app.css">
</head><body><div id="root"></div><script type="module" src="/app.js"></script></body></html>"""
CSS = b"body{margin:0;font-family:sans-serif} li{padding:8px;border-bottom:1px solid #ddd}"
JS = b"""const root = document.getElementById('root');
const ul = document.createElement('ul');
for (let i = 0; i < 200; i++) { const li = document.createElement('li');
  li.textContent = 'Item ' + i; ul.appendChild(li); }
root.appendChild(ul);"""


async def bare(binary: str, url: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        flags = [f for f in BASE_FLAGS if f != "--remote-debugging-pipe"]
        argv = [binary, *flags, "--no-sandbox", f"--user-data-dir={tmp}/profile",
                f"--screenshot={tmp}/shot.png", "--window-size=1280,800", url]  # fmt: skip
        start = time.perf_counter()
        await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
        elapsed = time.perf_counter() - start
        assert (await trio.Path(tmp, "shot.png").stat()).st_size > 0
        return elapsed


async def main(rounds: int) -> None:
    binary = find_chromium()
    if binary is None:
        raise SystemExit("no Chromium found")
    site = StubSite({"/": (200, "text/html", PAGE), "/app.css": (200, "text/css", CSS),
                     "/app.js": (200, "text/javascript", JS)})  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(site.serve)
        async with (
            open_preview_stack({"bench": f"http://127.0.0.1:{site.port}"}) as stack,
            open_preview_browser(BrowserConfig(), stack.address()) as browser,
        ):
            assert browser is not None
            url = stack.public_url("bench")  # *.localhost resolves to loopback in Chromium
            await browser.capture("bench", "/", full_page=False)  # start it: it is warm after
            warm, cold = [], []
            for _ in range(rounds):
                cold.append(await bare(binary, url))
                start = time.perf_counter()
                shot = await browser.capture("bench", "/", full_page=False)
                warm.append(time.perf_counter() - start)
            print(f"page: {url} ({shot.width}x{shot.height}, {len(shot.jpeg)} bytes JPEG)")
            print(f"bare chromium --screenshot: median {statistics.median(cold) * 1000:7.0f} ms "
                  f"(min {min(cold) * 1000:.0f})")  # fmt: skip
            print(f"warm PreviewBrowser.capture: median {statistics.median(warm) * 1000:6.0f} ms "
                  f"(min {min(warm) * 1000:.0f})")  # fmt: skip
            ratio = statistics.median(warm) / statistics.median(cold)
            print(f"ratio warm/bare: {ratio:.2f}x (target <= 0.5x) "
                  f"{'OK' if ratio <= 0.5 else 'MISSED'}")  # fmt: skip
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    trio.run(main, parser.parse_args().rounds)
