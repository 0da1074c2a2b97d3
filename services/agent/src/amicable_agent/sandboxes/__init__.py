"""Sandboxes: the backend interface (``base``), the runtime API client (``runtime_client``)
and the backends, ``local`` (processes on this machine) and ``kubernetes`` (agent-sandbox
``SandboxClaim``\\ s). The backends are imported only by the one the config selects."""

from __future__ import annotations

from .base import SandboxBackend, SandboxHandle, SandboxInfo, sandbox_id_for

__all__ = ["SandboxBackend", "SandboxHandle", "SandboxInfo", "sandbox_id_for"]
