"""Child-process helpers shared by exec, the dev-server supervisor and ``init-workspace``.

Kept free of the protocol and web stack so ``init-workspace`` and the supervisor (started
before the HTTP stack is imported) stay cheap to import.
"""

from __future__ import annotations

import contextlib
import os
import signal

#: Never handed to commands or the dev server: the runtime's own credentials.
PRIVATE_ENV = ("AMICABLE_RUNTIME_TOKEN", "AMICABLE_RUNTIME_TOKEN_FILE")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours minus the runtime's secrets, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    if extra:
        env.update(extra)
    return env


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by ``pid``; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
