"""What an INIT reply says about the project beyond its sandbox: the chat history, a pending
approval, the models and the project's model and spend, the database, the GitLab mirror."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from amicable_protocol.limits import INIT_PROMPT_CHARS, clip_text

if TYPE_CHECKING:
    from amicable_protocol.messages import HistoryEntry, HitlPending, ProjectInfo

    from amicable_agent.loop.api import SessionHost
    from amicable_agent.store import Project

    from .deps import SessionDeps
    from .sandbox import SessionSandbox


async def project_fields(
    host: SessionHost,
    deps: SessionDeps,
    sandbox: SessionSandbox,
    project: Project,
    model: str | None,
) -> tuple[ProjectInfo, dict[str, Any], list[HistoryEntry], HitlPending | None]:
    """``(project info, extension fields, chat history, pending approval)`` for INIT.

    ``model``: the model the editor picked (the caller may edit the project), which becomes
    the project's model.
    """
    engine = deps.engine
    extra: dict[str, Any] = sandbox.db_info.init_fields() if sandbox.db_info else {}
    if engine is not None:
        history = await engine.history(host)
        pending = await engine.hitl_pending(host)
        choices = engine.model_choices()
        if choices:  # an engine without models (tests) leaves the extension out
            extra["models"] = choices
            extra["model"] = await engine.project_model(host, model)
            extra["spend"] = await engine.project_spend(host)
    else:
        history = await deps.store.chat_history(host.session_id)
        pending = None
    info = project.info()
    if info.project_prompt is not None:  # a client must be able to take the frame
        info = attrs.evolve(info, project_prompt=clip_text(info.project_prompt, INIT_PROMPT_CHARS))
    if deps.git_sync is not None:
        record = await deps.git_sync.repo_record(host.session_id)
        if record is not None:
            info = attrs.evolve(info, **record.project_fields())
            extra["git"] = record.to_git_info()
    return info, extra, history, pending
