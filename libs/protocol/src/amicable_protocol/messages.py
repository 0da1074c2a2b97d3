"""Editor <-> agent WebSocket messages.

Wire-compatible with the existing Amicable editor: every server message is the envelope
``{id, type, data, timestamp, session_id}`` (timestamp in epoch milliseconds); the editor
sends ``{type, data, id?, timestamp?}`` with the session id inside ``data``.

Our additive extensions: client ``cancel`` and ``dequeue``; server ``sandbox_status``,
``usage``, ``pong``, ``turn_started``, ``turn_ended`` and ``queue``; INIT's ``turns``,
``turns_before``, ``running_turn`` and ``queued`` (the conversation as it was shown).
A client that ignores unknown types keeps working.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from typing import Any, Literal

import attrs

from ._converter import converter, register_omit_none, structure
from ._strict_json import load_json
from ._validation import structure_items, wrong_type
from .errors import ProtocolError
from .limits import MAX_USER_TEXT_CHARS, check_text

#: Largest frame the agent accepts (the server closes the socket with 1009 above it).
MAX_FRAME_BYTES = 16 * 1024 * 1024


class MessageType(enum.StrEnum):
    """Every ``type`` value of the protocol (``load_code``/``edit_code`` are dead legacy)."""

    INIT = "init"
    USER = "user"
    AGENT_PARTIAL = "agent_partial"
    AGENT_FINAL = "agent_final"
    LOAD_CODE = "load_code"
    EDIT_CODE = "edit_code"
    UPDATE_IN_PROGRESS = "update_in_progress"
    UPDATE_FILE = "update_file"
    UPDATE_COMPLETED = "update_completed"
    TRACE_EVENT = "trace_event"
    HITL_REQUEST = "hitl_request"
    HITL_RESPONSE = "hitl_response"
    RUNTIME_ERROR = "runtime_error"
    ERROR = "error"
    PING = "ping"
    # Extensions (additive, ignorable by the existing editor).
    CANCEL = "cancel"
    SANDBOX_STATUS = "sandbox_status"
    USAGE = "usage"
    PONG = "pong"
    TURN_STARTED = "turn_started"
    TURN_ENDED = "turn_ended"
    QUEUE = "queue"
    DEQUEUE = "dequeue"


PermissionMode = Literal["default", "accept_edits", "bypass"]
ThinkingLevel = Literal["none", "think", "think_hard", "ultrathink"]
ActiveView = Literal["preview", "code", "database", "design"]


# ---------------------------------------------------------------------------------------
# Client -> server payloads


@attrs.frozen
class InitData:
    session_id: str
    permission_mode: PermissionMode | None = None
    thinking_level: ThinkingLevel | None = None
    #: Extension: the project's model (an ``InitReply.models`` id); older editors omit it.
    model: str | None = None


@attrs.frozen
class TextBlock:
    text: str
    type: Literal["text"] = "text"


@attrs.frozen
class ImageBlock:
    base64: str
    mime_type: str
    type: Literal["image"] = "image"


ContentBlock = TextBlock | ImageBlock


@attrs.frozen
class UiContext:
    active_view: ActiveView | None = None
    preview_path: str | None = None
    device_type: str | None = None
    selected_design_approach_id: str | None = None
    viewport_width: int | None = None
    viewport_height: int | None = None
    design_total_iterations: int | None = None
    design_iteration: int | None = None
    database_editor: bool | None = None


@attrs.frozen
class UserData:
    session_id: str
    text: str = ""
    content_blocks: tuple[ContentBlock, ...] | None = None
    ui_context: UiContext | None = None
    #: Extension: run this turn (and the project's next ones) on this model.
    model: str | None = None


@attrs.frozen
class EditedAction:
    name: str
    args: dict[str, Any]


@attrs.frozen
class HitlDecision:
    type: Literal["approve", "edit", "reject"]
    message: str | None = None
    edited_action: EditedAction | None = None


@attrs.frozen
class HitlResponse:
    decisions: tuple[HitlDecision, ...]


@attrs.frozen
class HitlResponseData:
    session_id: str
    interrupt_id: str
    response: HitlResponse


@attrs.frozen
class RuntimeErrorInfo:
    kind: str
    message: str
    stack: str | None = None
    url: str | None = None
    ts_ms: int | None = None
    fingerprint: str | None = None
    level: str | None = None
    source: str | None = None
    args_preview: str | None = None
    extra: dict[str, Any] | None = None


@attrs.frozen
class RuntimeErrorData:
    session_id: str
    error: RuntimeErrorInfo
    #: Extension: a person pressed "Fix it": heal even when automatic healing is off, paused
    #: or cooling down, and queue it behind a running turn.
    requested: bool | None = None


@attrs.frozen
class PingData:
    session_id: str | None = None


@attrs.frozen
class CancelData:
    session_id: str | None = None


@attrs.frozen
class DequeueData:
    """``dequeue``: remove a queued prompt (``QueuedPrompt.id``) before it runs."""

    id: str
    session_id: str | None = None


ClientData = (
    InitData | UserData | HitlResponseData | RuntimeErrorData | PingData | CancelData | DequeueData
)

_CLIENT_DATA: dict[MessageType, type[Any]] = {
    MessageType.INIT: InitData,
    MessageType.USER: UserData,
    MessageType.HITL_RESPONSE: HitlResponseData,
    MessageType.RUNTIME_ERROR: RuntimeErrorData,
    MessageType.PING: PingData,
    MessageType.CANCEL: CancelData,
    MessageType.DEQUEUE: DequeueData,
}


@attrs.frozen
class ClientMessage:
    """A decoded client frame. ``data`` has the class matching ``type``."""

    type: MessageType
    data: ClientData
    id: str | None = None
    timestamp: int | None = None

    @property
    def session_id(self) -> str | None:
        return self.data.session_id


_CONTENT_BLOCKS = tuple[ContentBlock, ...]


def _structure_content_block(obj: Any) -> ContentBlock | None:
    if not isinstance(obj, dict):
        raise wrong_type("an object", obj)
    kind = obj.get("type")
    if kind == "text":
        return converter.structure(obj, TextBlock)
    if kind == "image":
        return converter.structure(obj, ImageBlock)
    return None  # other block types are dropped, as the existing agent does


def _structure_blocks(obj: Any, _: Any) -> tuple[ContentBlock, ...]:
    blocks = structure_items(obj, _CONTENT_BLOCKS, _structure_content_block)
    return tuple(b for b in blocks if b is not None)


converter.register_structure_hook_func(lambda t: t == _CONTENT_BLOCKS, _structure_blocks)


def _load_json(frame: str | bytes) -> Any:
    """:func:`load_json` of a frame (every failure is ``invalid_json``)."""
    return load_json(frame, what="frame")


def _frame_size(frame: str | bytes) -> int:
    if isinstance(frame, bytes) or len(frame) * 4 <= MAX_FRAME_BYTES:
        return len(frame)  # a str this short cannot exceed the limit once encoded
    return len(frame.encode("utf-8", "surrogatepass"))


def decode_client_frame(frame: str | bytes) -> ClientMessage:
    """Decode one client WebSocket frame.

    Accepts what the existing editor sends: ``{type, data, id?, timestamp?}``, a top-level
    ``session_id`` (copied into ``data`` when ``data`` lacks one), a top-level ``error``
    (copied into ``data`` likewise), and the legacy nested form where the type sits in
    ``data.type``. Unknown keys are ignored.

    Raises:
        ProtocolError: ``too_large`` (the frame), ``text_too_long`` (a ``user`` text over
            :data:`~.limits.MAX_USER_TEXT_CHARS`), ``invalid_json``,
            ``unknown_message_type`` or ``invalid_field`` with a message naming the problem.
    """
    if _frame_size(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frame exceeds {MAX_FRAME_BYTES} bytes")
    raw = _load_json(frame)
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_json", "frame must be a JSON object")
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError("invalid_field", "data must be an object")
    type_name = raw.get("type")
    if type_name is None and isinstance(data.get("type"), str):
        type_name = data["type"]  # legacy nested form
        data = {k: v for k, v in data.items() if k != "type"}
    if not isinstance(type_name, str):
        raise ProtocolError("invalid_field", "type must be a string")
    try:
        mtype = MessageType(type_name)
    except ValueError:
        mtype = None
    if mtype is None or mtype not in _CLIENT_DATA:
        raise ProtocolError("unknown_message_type", f"unknown message type {type_name!r}")
    if "error" in raw and "error" not in data:
        data = {**data, "error": raw["error"]}  # the editor may send runtime_error's at top level
    top_session = raw.get("session_id")
    if isinstance(top_session, str) and top_session and not data.get("session_id"):
        data = {**data, "session_id": top_session}
    msg_id = raw.get("id")
    if msg_id is not None and not isinstance(msg_id, str):
        raise ProtocolError("invalid_field", "id must be a string")
    timestamp = raw.get("timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int | float)
    ):
        raise ProtocolError("invalid_field", "timestamp must be a number")
    payload = structure(data, _CLIENT_DATA[mtype])
    if isinstance(payload, UserData):
        blocks = payload.content_blocks or ()
        text = payload.text + "".join(b.text for b in blocks if isinstance(b, TextBlock))
        check_text("data.text", text, MAX_USER_TEXT_CHARS, code="text_too_long")
    return ClientMessage(
        type=mtype,
        data=payload,
        id=msg_id,
        timestamp=int(timestamp) if timestamp is not None else None,
    )


# ---------------------------------------------------------------------------------------
# Server -> client payloads


@attrs.frozen
class Empty:
    """``data: {}`` (update_in_progress, update_completed, ping)."""


@attrs.frozen
class TextData:
    """``agent_partial`` (cumulative text), ``agent_final``, ``update_file`` (status line)."""

    text: str


@attrs.frozen
class ProjectInfo:
    project_id: str
    name: str
    slug: str
    template_id: str
    project_prompt: str | None = None
    gitlab_project_id: int | None = None
    gitlab_path: str | None = None
    gitlab_web_url: str | None = None


@attrs.frozen
class GitInfo:
    """The project's GitLab repository (INIT ``git``; absent when sync is off)."""

    web_url: str
    path_with_namespace: str
    gitlab_project_id: int
    http_url_to_repo: str


@attrs.frozen
class HistoryEntry:
    role: Literal["user", "assistant"]
    text: str


@attrs.frozen
class ActionRequest:
    name: str
    args: dict[str, Any]
    description: str = ""


@attrs.frozen
class ReviewConfig:
    action_name: str
    allowed_decisions: tuple[Literal["approve", "edit", "reject"], ...] = (
        "approve",
        "edit",
        "reject",
    )


@attrs.frozen
class HitlRequest:
    action_requests: tuple[ActionRequest, ...]
    review_configs: tuple[ReviewConfig, ...]


@attrs.frozen
class HitlPending:
    interrupt_id: str
    request: HitlRequest


@attrs.frozen
class DbInfo:
    """The app database of an INIT (present when the agent has Hasura configured)."""

    graphql_url: str


@attrs.frozen
class ModelChoice:
    """A model the deployment offers (INIT ``models``): no URL, no key."""

    id: str
    label: str
    provider: str
    images: bool = True
    context_window: int | None = None
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0


@attrs.frozen
class SpendSummary:
    """Tokens and estimated cost so far (a project's running total)."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


TurnTrigger = Literal["user", "runtime_error", "hitl_response"]
TurnOutcome = Literal["finished", "failed", "cancelled"]
#: ``system``: the platform asked (auto-heal, "Fix it" on a preview error), not a person.
PromptAuthor = Literal["user", "system"]


@attrs.frozen
class QueuedPrompt:
    """A prompt waiting behind the running turn (``queue``, INIT's ``queued``)."""

    id: str
    text: str
    trigger: TurnTrigger = "user"
    author: PromptAuthor = "user"
    by: str | None = None


@attrs.frozen
class TurnRecord:
    """One turn as the editors were shown it: the server envelopes it broadcast, in order,
    from ``turn_started`` to ``turn_ended`` (cumulative partials coalesced, tool inputs and
    outputs capped). ``seq`` orders stored turns (the paging cursor); None while running."""

    turn_id: str
    events: tuple[dict[str, Any], ...] = ()
    seq: int | None = None


@attrs.frozen
class TurnPage:
    """``GET /api/projects/{id}/turns?before=``: older turns (oldest first) and the cursor
    for the page before them (None: this is the oldest)."""

    turns: tuple[TurnRecord, ...]
    before: int | None = None


@attrs.frozen
class InitReply:
    """The ``init`` answer: only public fields (the existing agent leaked internal state)."""

    url: str
    sandbox_id: str
    exists: bool
    app_id: str
    template_id: str
    project: ProjectInfo
    conversation_history: tuple[HistoryEntry, ...] = ()
    permission_mode: PermissionMode = "default"
    thinking_level: ThinkingLevel = "none"
    hitl_pending: HitlPending | None = None
    db: DbInfo | None = None
    db_schema: str | None = None
    db_role: str | None = None
    git: GitInfo | None = None
    #: Extensions: the models on offer, the project's model, the project's spend so far.
    models: tuple[ModelChoice, ...] | None = None
    model: str | None = None
    spend: SpendSummary | None = None
    #: Extensions: the newest turns as they were shown (oldest first), the cursor for older
    #: ones (``GET /api/projects/{id}/turns?before=``; None: there are none), the running
    #: turn's events so far, and the prompts queued behind it.
    turns: tuple[TurnRecord, ...] | None = None
    turns_before: int | None = None
    running_turn: TurnRecord | None = None
    queued: tuple[QueuedPrompt, ...] | None = None


TracePhase = Literal[
    "tool_start",
    "tool_end",
    "tool_error",
    "tool_explain",
    "reasoning_summary",
    "session_start",
    "user_prompt_submit",
    "pre_tool_use",
    "post_tool_use",
    "stop",
    "pre_compact",
    "qa_check",
]


@attrs.frozen
class TraceEvent:
    phase: TracePhase
    tool_name: str
    input: Any = None
    output: Any = None
    error: str | None = None
    run_id: str | None = None
    parent_ids: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    assistant_msg_id: str | None = None
    text: str | None = None
    duration_ms: int | None = None


@attrs.frozen
class QaResult:
    command: str
    exit_code: int
    truncated: bool = False
    duration_ms: int | None = None


@attrs.frozen
class ErrorData:
    """``error``: ``error`` is a stable code (or, for compatibility, a readable sentence)."""

    error: str
    detail: str | None = None
    qa_results: tuple[QaResult, ...] | None = None
    fingerprint: str | None = None


@attrs.frozen
class HitlRequestData:
    interrupt_id: str
    request: HitlRequest


#: ``restoring``: the sandbox was re-created (reaped, restarted, deleted) and the project's
#: files and history are copied back from its snapshots before the preview is shown.
SandboxStage = Literal[
    "queued", "creating", "starting_runtime", "starting_preview", "restoring", "ready", "failed"
]


@attrs.frozen
class SandboxStatus:
    stage: SandboxStage
    message: str = ""
    sandbox_id: str | None = None
    elapsed_ms: int | None = None


@attrs.frozen
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    #: Extensions: the model's id in ``InitReply.models``; the project's total so far.
    model_id: str | None = None
    project: SpendSummary | None = None


@attrs.frozen
class TurnStarted:
    """``turn_started``: a queued prompt became the running turn (every tab shows it)."""

    turn_id: str
    trigger: TurnTrigger = "user"
    text: str = ""
    author: PromptAuthor = "user"
    by: str | None = None
    images: int = 0


@attrs.frozen
class TurnEnded:
    """``turn_ended``: how the turn ended (after its ``update_completed``)."""

    turn_id: str
    outcome: TurnOutcome


@attrs.frozen
class QueueData:
    """``queue``: the prompts now waiting behind the running turn (the whole list)."""

    items: tuple[QueuedPrompt, ...] = ()


ServerData = (
    Empty
    | TextData
    | InitReply
    | TraceEvent
    | ErrorData
    | HitlRequestData
    | SandboxStatus
    | Usage
    | TurnStarted
    | TurnEnded
    | QueueData
)

SERVER_DATA: dict[MessageType, type[Any]] = {
    MessageType.INIT: InitReply,
    MessageType.UPDATE_IN_PROGRESS: Empty,
    MessageType.AGENT_PARTIAL: TextData,
    MessageType.AGENT_FINAL: TextData,
    MessageType.UPDATE_FILE: TextData,
    MessageType.UPDATE_COMPLETED: Empty,
    MessageType.TRACE_EVENT: TraceEvent,
    MessageType.HITL_REQUEST: HitlRequestData,
    MessageType.ERROR: ErrorData,
    MessageType.PING: Empty,
    MessageType.SANDBOX_STATUS: SandboxStatus,
    MessageType.USAGE: Usage,
    MessageType.PONG: Empty,
    MessageType.TURN_STARTED: TurnStarted,
    MessageType.TURN_ENDED: TurnEnded,
    MessageType.QUEUE: QueueData,
}

register_omit_none(
    InitReply,
    TraceEvent,
    ErrorData,
    SandboxStatus,
    ProjectInfo,
    QaResult,
    HitlDecision,
    Usage,
    ModelChoice,
    QueuedPrompt,
    TurnRecord,
    TurnStarted,
    TurnPage,
)


@attrs.frozen
class ServerMessage:
    """One server -> client envelope."""

    type: MessageType
    data: ServerData
    session_id: str
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    timestamp: int = attrs.field(factory=lambda: int(time.time() * 1000))

    def __attrs_post_init__(self) -> None:
        expected = SERVER_DATA.get(self.type)
        if expected is None or not isinstance(self.data, expected):
            raise TypeError(f"{type(self.data).__name__} is not the data of {self.type!r}")


def server_message_to_json(msg: ServerMessage) -> dict[str, Any]:
    """The JSON object sent for ``msg``."""
    return {
        "id": msg.id,
        "type": str(msg.type),
        "data": converter.unstructure(msg.data, SERVER_DATA[msg.type]),
        "timestamp": msg.timestamp,
        "session_id": msg.session_id,
    }


def encode_server_message(msg: ServerMessage) -> str:
    """Serialise ``msg`` as one text frame."""
    return json.dumps(server_message_to_json(msg), separators=(",", ":"), ensure_ascii=False)


def decode_server_message(frame: str | bytes) -> ServerMessage:
    """Decode a server frame (used by tests, benchmarks and Python clients).

    Raises:
        ProtocolError: the frame is not a valid server message.
    """
    raw = _load_json(frame)
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_json", "frame must be a JSON object")
    try:
        mtype = MessageType(str(raw.get("type")))
    except ValueError as exc:
        raise ProtocolError("unknown_message_type", f"unknown type {raw.get('type')!r}") from exc
    cls = SERVER_DATA.get(mtype)
    if cls is None:
        raise ProtocolError("unknown_message_type", f"{mtype} is not a server message")
    data = structure(raw.get("data", {}), cls)
    for key in ("id", "session_id"):
        if not isinstance(raw.get(key), str):
            raise ProtocolError("invalid_field", f"{key} must be a string")
    ts = raw.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ProtocolError("invalid_field", "timestamp must be an integer")
    return ServerMessage(
        type=mtype, data=data, session_id=raw["session_id"], id=raw["id"], timestamp=ts
    )
