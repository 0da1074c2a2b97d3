"""Fakes for tests of the agent and of code that uses it (like :mod:`trio.testing`).

Shared by tests and benchmarks, never by a service. One module per thing stood in for:

- :mod:`.fake_sandbox_backend`: :class:`FakeSandboxBackend`, :func:`unused_runtime_factory`;
- :mod:`.memory_store`: :class:`MemoryStore`, an in-memory project store (its spend part
  :class:`MemorySpend` alone for hosts that keep only a conversation);
- :mod:`.stub_engine`: :class:`StubEngine`, a turn engine whose methods do nothing;
- :mod:`.ws_client`: ``ws_send``/``ws_recv``/``ws_recv_until``/``ws_expect_close``, the
  client side of the agent's WebSocket;
- ``fake_anthropic``, ``fake_openai`` (one script, :mod:`.model_script`, drives both),
  ``fake_kube``, ``fake_hasura``, ``fake_gitlab``, ``fake_resolver``, ``postgres``,
  ``workspace_runtime``, ``preview_stack`` (the real preview router in front of a scripted
  site, for screenshots): import those from their modules (they pull in
  servers and clients a test may not need).
"""

from .fake_sandbox_backend import FakeSandboxBackend, unused_runtime_factory
from .memory_store import MemorySpend, MemoryStore
from .stub_engine import StubEngine
from .ws_client import ws_expect_close, ws_recv, ws_recv_until, ws_send

__all__ = [
    "FakeSandboxBackend",
    "MemorySpend",
    "MemoryStore",
    "StubEngine",
    "unused_runtime_factory",
    "ws_expect_close",
    "ws_recv",
    "ws_recv_until",
    "ws_send",
]
