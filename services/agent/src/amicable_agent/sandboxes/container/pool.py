"""The container backend's warm pool: spare sandbox containers, started and serving, per
template of ``AMICABLE_WARM_POOL_TEMPLATES``.

A new project's ``ensure`` takes one (:meth:`SparePool.take`) and the backend renames it to
the project's sandbox id (the claim: a rename is atomic on the engine, so one spare never goes
to two projects). The pool starts a replacement ``refill_delay_s`` later, so the refill does
not compete with the claimed preview's first page loads for CPU. The pool only keeps names;
the backend starts spares (``start``) and removes them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from amicable_agent.errors import SandboxError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

#: After a failed start, wait this long before the next attempt (image missing, …).
RETRY_S = 30.0


class SparePool:
    """Keeps ``size`` started spares per template.

    Args:
        templates: the pooled templates.
        size: spares per template (0 disables the pool).
        refill_delay_s: delay between a take and the start of its replacement.
        start: starts a spare of a template and returns its container name once it serves
            (it removes what it created when it fails or is cancelled).
    """

    def __init__(
        self,
        templates: Sequence[str],
        size: int,
        refill_delay_s: float,
        start: Callable[[str], Awaitable[str]],
    ) -> None:
        self.size = size
        self._refill_delay_s = refill_delay_s
        self._start = start
        self._spares: dict[str, list[str]] = {t: [] for t in dict.fromkeys(templates)}
        self._changed = trio.Event()
        self._filled = trio.Event()

    def take(self, template_id: str) -> str | None:
        """A spare of ``template_id`` out of the pool (its name), or None."""
        spares = self._spares.get(template_id)
        if not spares:
            return None
        self._changed.set()
        return spares.pop(0)

    def names(self) -> list[str]:
        """Every spare the pool holds now."""
        return [name for spares in self._spares.values() for name in spares]

    def count(self, template_id: str) -> int:
        return len(self._spares.get(template_id, ()))

    def _full(self) -> bool:
        return all(len(s) >= self.size for s in self._spares.values())

    async def wait_filled(self) -> None:
        """Wait until every template holds ``size`` spares."""
        while not self._full():
            await self._filled.wait()

    async def run(self) -> None:
        """Keep the pool filled until cancelled."""
        if self.size <= 0 or not self._spares:
            return
        while True:
            self._changed = trio.Event()
            for template_id, spares in self._spares.items():
                while len(spares) < self.size:
                    try:
                        spares.append(await self._start(template_id))
                    except SandboxError as exc:
                        log.warning("warm pool (%s): %s", template_id, exc)
                        await trio.sleep(RETRY_S)
            self._filled.set()
            self._filled = trio.Event()
            await self._changed.wait()
            await trio.sleep(self._refill_delay_s)
