/**
 * Editor <-> agent WebSocket messages (libs/protocol/src/amicable_protocol/messages.py).
 *
 * The payload shapes are the generated types in `types.gen.ts` where the schema provides
 * them; this module adds the envelope, the type tags and a tolerant frame decoder.
 */

export const MessageType = {
  INIT: "init",
  USER: "user",
  AGENT_PARTIAL: "agent_partial",
  AGENT_FINAL: "agent_final",
  UPDATE_IN_PROGRESS: "update_in_progress",
  UPDATE_FILE: "update_file",
  UPDATE_COMPLETED: "update_completed",
  TRACE_EVENT: "trace_event",
  HITL_REQUEST: "hitl_request",
  HITL_RESPONSE: "hitl_response",
  RUNTIME_ERROR: "runtime_error",
  ERROR: "error",
  PING: "ping",
  CANCEL: "cancel",
  SANDBOX_STATUS: "sandbox_status",
  USAGE: "usage",
  PONG: "pong",
  TURN_STARTED: "turn_started",
  TURN_ENDED: "turn_ended",
  QUEUE: "queue",
  DEQUEUE: "dequeue",
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

import type * as gen from "./types.gen";

export type {
  ActionRequest,
  ErrorData,
  HistoryEntry,
  HitlDecision,
  HitlPending,
  HitlRequest,
  ImageBlock,
  InitReply,
  ModelChoice,
  ProjectInfo,
  QaResult,
  QueuedPrompt,
  ReviewConfig,
  RuntimeErrorInfo,
  SandboxStatus,
  SpendSummary,
  TextBlock,
  TextData,
  TraceEvent,
  TurnEnded,
  TurnRecord,
  TurnStarted,
  UiContext,
  Usage,
} from "./types.gen";

export type PermissionMode = NonNullable<gen.InitData["permission_mode"]>;
export type ThinkingLevel = NonNullable<gen.InitData["thinking_level"]>;
export type ActiveView = NonNullable<gen.UiContext["active_view"]>;
export type DecisionType = gen.HitlDecision["type"];
export type TracePhase = gen.TraceEvent["phase"];
export type SandboxStage = gen.SandboxStatus["stage"];
export type ContentBlock = gen.TextBlock | gen.ImageBlock;

/** One server -> client envelope, discriminated on `type` (generated from the schema). */
export type ServerMessage = gen.ServerMessage;
export type ServerMessageType = ServerMessage["type"];
/** Server payload per message type. */
export type ServerDataMap = { [K in ServerMessageType]: Extract<ServerMessage, { type: K }>["data"] };

type ClientEnvelope = gen.ClientMessage;
type WithoutSession<T> = Omit<T, "session_id">;
/** Client payload per message type (the socket merges session_id into data). */
export type ClientDataMap = {
  [K in ClientEnvelope["type"]]: WithoutSession<Extract<ClientEnvelope, { type: K }>["data"]>;
};
export type ClientMessageType = keyof ClientDataMap;

const SERVER_TYPES: ReadonlySet<string> = new Set<ServerMessageType>([
  "init",
  "update_in_progress",
  "agent_partial",
  "agent_final",
  "update_file",
  "update_completed",
  "trace_event",
  "hitl_request",
  "error",
  "ping",
  "pong",
  "sandbox_status",
  "usage",
  "turn_started",
  "turn_ended",
  "queue",
]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Decode one server frame; `undefined` for frames the editor ignores (non-JSON, unknown
 * type), as the existing editor does. Accepts the legacy nested form (`data.type`) and a
 * top-level `error` copied into `data.error`.
 */
export function decodeServerFrame(frame: string): ServerMessage | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(frame);
  } catch {
    return undefined;
  }
  return decodeServerObject(raw);
}

/** `decodeServerFrame` of an already parsed envelope (a stored turn's events). */
export function decodeServerObject(raw: unknown): ServerMessage | undefined {
  if (!isObject(raw)) return undefined;
  let data: Record<string, unknown> = isObject(raw.data) ? raw.data : {};
  let type = raw.type;
  if (typeof type !== "string" && typeof data.type === "string") {
    type = data.type;
    data = Object.fromEntries(Object.entries(data).filter(([k]) => k !== "type"));
  }
  if (typeof type !== "string" || !SERVER_TYPES.has(type)) return undefined;
  if (type === "error" && data.error === undefined && raw.error !== undefined) {
    data = { ...data, error: raw.error };
  }
  const id = typeof raw.id === "string" && raw.id !== "" ? raw.id : undefined;
  return {
    id: id ?? `local-${Math.random().toString(36).slice(2)}`,
    type,
    data,
    timestamp: typeof raw.timestamp === "number" ? raw.timestamp : Date.now(),
    session_id: typeof raw.session_id === "string" ? raw.session_id : "",
  } as ServerMessage;
}
