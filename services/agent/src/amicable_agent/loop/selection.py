"""Which model a turn runs on, and one client per model for the whole agent process.

A project's model is stored with the project (project state ``model``); the editor's picker
sends a new choice in ``init`` or ``user`` (``model``, an extension old editors never send).
A project without a choice, or whose model was removed from the configuration, runs on the
deployment default (``DEEPAGENTS_MODEL``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from amicable_agent.errors import AgentError

from .llm import LlmClient

if TYPE_CHECKING:
    from .models import ModelCatalog, ModelSpec
    from .settings import LoopSettings

#: Project state key of the project's model id.
PROJECT_MODEL_KEY = "model"


class ChoiceStore(Protocol):
    """Where a project's model choice is kept (the loop's ``ConversationStore`` qualifies;
    typed this narrowly so the loop's seam, ``api.py``, can name :class:`ModelClients`)."""

    async def load_state(self, project_id: str, key: str) -> Any: ...

    async def save_state(self, project_id: str, key: str, value: Any) -> None: ...


class UnknownModel(AgentError):
    """A requested model id the deployment does not offer (never leaves the loop)."""


class ModelClients:
    """The catalog of models and their clients, opened on first use.

    Args:
        settings: the loop settings (the catalog, retry policy).
        default_client: the client of the default model (tests pass one); opened on first
            use otherwise.
    """

    def __init__(self, settings: LoopSettings, *, default_client: LlmClient | None = None) -> None:
        self.settings = settings
        self.catalog: ModelCatalog = settings.catalog()
        self._clients: dict[str, LlmClient] = {}
        if default_client is not None:
            self._clients[self.catalog.default.id] = default_client

    def client(self, spec: ModelSpec) -> LlmClient:
        """The client of ``spec`` (one per model and process)."""
        client = self._clients.get(spec.id)
        if client is None:
            client = self._clients[spec.id] = LlmClient(self.settings, spec)
        return client

    async def aclose(self) -> None:
        """Close every opened client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def project_model(self, store: ChoiceStore, project_id: str) -> ModelSpec:
        """The project's model (the default when none is chosen or it is gone)."""
        chosen = await store.load_state(project_id, PROJECT_MODEL_KEY)
        return self.catalog.resolve(chosen if isinstance(chosen, str) else None)

    async def choose(self, store: ChoiceStore, project_id: str, requested: str | None) -> ModelSpec:
        """Store ``requested`` as the project's model (when given) and return the model.

        Raises:
            UnknownModel: ``requested`` is not on offer (nothing is stored).
        """
        if requested is None:
            return await self.project_model(store, project_id)
        spec = self.catalog.get(requested)
        if spec is None:
            raise UnknownModel(requested)
        current = await store.load_state(project_id, PROJECT_MODEL_KEY)
        if current != spec.id:
            await store.save_state(project_id, PROJECT_MODEL_KEY, spec.id)
        return spec
