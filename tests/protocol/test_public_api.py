"""The package exports exactly its intended public names (as httpx tests its own)."""

from __future__ import annotations

import inspect

import amicable_protocol
import attrs
from amicable_protocol import http, messages, preview, runtime

INTENDED = [
    "INIT_HISTORY_CHARS",
    "INIT_HISTORY_ENTRY_CHARS",
    "INIT_PROMPT_CHARS",
    "MAX_COMMAND_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_PROJECT_PROMPT_CHARS",
    "MAX_USER_TEXT_CHARS",
    "PREVIEW_TOKEN_HEADER",
    "ActionRequest",
    "ActiveView",
    "CancelData",
    "ClientData",
    "ClientMessage",
    "ContentBlock",
    "DbInfo",
    "DequeueData",
    "EditRequest",
    "EditResult",
    "EditedAction",
    "Empty",
    "EntryKind",
    "ErrorBody",
    "ErrorData",
    "ExecExit",
    "ExecOutput",
    "ExecRequest",
    "ExecResult",
    "GitInfo",
    "GlobRequest",
    "GlobResult",
    "GrepMatch",
    "GrepRequest",
    "GrepResult",
    "HistoryEntry",
    "HitlDecision",
    "HitlPending",
    "HitlRequest",
    "HitlRequestData",
    "HitlResponse",
    "HitlResponseData",
    "ImageBlock",
    "InitData",
    "InitReply",
    "MessageType",
    "ModelChoice",
    "MoveRequest",
    "PathRequest",
    "PathResult",
    "PermissionMode",
    "PingData",
    "PreviewLogs",
    "PreviewResolution",
    "PreviewState",
    "PreviewStatus",
    "ProjectInfo",
    "PromptAuthor",
    "ProtocolError",
    "ProtocolErrorCode",
    "QaResult",
    "QueueData",
    "QueuedPrompt",
    "ReviewConfig",
    "RuntimeErrorData",
    "RuntimeErrorInfo",
    "SandboxStage",
    "SandboxStatus",
    "ServerData",
    "ServerMessage",
    "SpendSummary",
    "TextBlock",
    "TextData",
    "ThinkingLevel",
    "TraceEvent",
    "TracePhase",
    "TreeEntry",
    "TreeResult",
    "TurnEnded",
    "TurnOutcome",
    "TurnPage",
    "TurnRecord",
    "TurnStarted",
    "TurnTrigger",
    "UiContext",
    "Usage",
    "UserData",
    "WriteResult",
    "check_text",
    "clip_text",
    "decode_client_frame",
    "decode_server_message",
    "encode_server_message",
    "fit_history",
    "load_json",
    "path_length_problem",
    "server_message_to_json",
    "structure",
    "unstructure",
]


def test_all_is_exactly_the_intended_names() -> None:
    assert amicable_protocol.__all__ == INTENDED


def test_every_public_attribute_is_in_all() -> None:
    public = {
        name
        for name, value in vars(amicable_protocol).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(amicable_protocol.__all__)


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from amicable_protocol import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(INTENDED)


def test_every_wire_class_is_exported() -> None:
    for module in (messages, runtime, http, preview):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and attrs.has(cls):
                assert getattr(amicable_protocol, name) is cls, f"{module.__name__}.{name}"
