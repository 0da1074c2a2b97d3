"""Amicable's live reload for an API preview (keep this file).

``uvicorn --reload`` restarts the server on every saved change; the landing page polls the
boot id and reloads itself when it changed.
"""

import os
import time

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

BOOT_ID = f"{os.getpid()}-{time.time_ns()}"

_SCRIPT = """(function () {
  var me = document.currentScript, boot = me && me.dataset.boot;
  if (!boot) return;
  setInterval(function () {
    fetch('/__amicable/boot', { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (id) { if (id && id !== boot) location.reload(); })
      .catch(function () {});
  }, 1000);
})();"""


def reload_script_tag() -> str:
    """The ``<script>`` tag that reloads the page after a restart."""
    return f'<script src="/__amicable/reload.js" data-boot="{BOOT_ID}"></script>'


def mount_reload(app: FastAPI) -> None:
    """Add the two live-reload routes (hidden from the API docs)."""

    @app.get("/__amicable/boot", include_in_schema=False)
    def boot() -> PlainTextResponse:
        return PlainTextResponse(BOOT_ID, headers={"cache-control": "no-store"})

    @app.get("/__amicable/reload.js", include_in_schema=False)
    def script() -> Response:
        return Response(_SCRIPT, media_type="text/javascript")
