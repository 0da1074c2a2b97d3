"""The quart blueprints: the routes the route table of ``fastpath.py`` leaves to quart.

=====================  ==================================================================
``fs``                 ``DELETE /v1/files/<path>``, ``POST /v1/fs/move|mkdir|edit|glob|grep``,
                       ``GET /v1/fs/tree``
``archive``            ``GET /v1/archive`` (streamed)
``exec_stream``        ``WS /v1/exec/stream``
``preview``            ``GET /v1/preview/logs``
=====================  ==================================================================

Each handler finds the workspace's objects with :func:`~._shared.services` (installed on the
app by :func:`~amicable_sandbox_runtime.app.create_app`); auth and error bodies are the
app's hooks, shared by every blueprint.
"""

from __future__ import annotations

from ._shared import Services
from .archive import blueprint as archive
from .exec_stream import blueprint as exec_stream
from .fs import blueprint as fs
from .preview import blueprint as preview

BLUEPRINTS = (fs, archive, exec_stream, preview)

__all__ = ["BLUEPRINTS", "Services"]
