/**
 * The editor session state and its reducer: every server message and every local action
 * (sending a prompt, answering an approval, …) goes through `reduce`. Pure and unit-tested.
 */
import {
  decodeServerObject,
  type ContentBlock,
  type ErrorData,
  type HitlPending,
  type InitReply,
  type QaResult,
  type ModelChoice,
  type QueuedPrompt,
  type SandboxStatus,
  type ServerMessage,
  type SpendSummary,
  type TraceEvent,
  type TurnEnded,
  type TurnRecord,
  type TurnStarted,
  type Usage,
} from "../protocol/messages";
import { parseAssistantText } from "./uiBlocks";
import { describeError, isRetryable, type ErrorExplanation } from "./errors";
import { isCheckpointSaved, restoreNotice, type RestoreNotice } from "./checkpoints";

/** `stopped`: the turn ended (Stop, an error) before the tool reported its end. */
export type ToolStatus = "running" | "ok" | "error" | "stopped";

export interface ToolRun {
  runId: string;
  name: string;
  status: ToolStatus;
  input?: unknown;
  output?: unknown;
  error?: string;
  explanation?: string;
  startedAt: number;
  durationMs?: number;
}

/** A tool card placed in the bubble after `anchor` characters of (ui-block-free) text. */
export interface TimelineTool {
  runId: string;
  anchor: number;
}

export interface AssistantItem {
  kind: "assistant";
  key: string;
  serverIds: string[];
  text: string;
  final: boolean;
  runs: Record<string, ToolRun>;
  timeline: TimelineTool[];
  reasoning?: string;
  /** Who wrote `reasoning`: the platform (from what the turn did) or the model itself. */
  reasoningBy?: "platform" | "model";
  usage?: Usage;
}

export interface UserItem {
  kind: "user";
  key: string;
  text: string;
  images: { mime_type: string; base64: string }[];
  /** `system`: the platform asked (auto-heal, "Fix it"), not a person. */
  author?: "user" | "system";
  /** Images that were attached but are not kept in the stored conversation. */
  imageCount?: number;
}

export interface ErrorItem {
  kind: "error";
  key: string;
  code: string;
  explanation: ErrorExplanation;
  detail?: string;
  qaResults?: QaResult[];
  /** The prompt a Retry sends again (model and network errors). */
  retry?: { text: string };
}

/** A line from the platform in the chat (e.g. "Project files restored to …"). */
export interface NoticeItem {
  kind: "notice";
  key: string;
  text: string;
  /** `stopped`: the calm marker of a stopped turn. */
  tone?: "stopped";
}

export type ChatItem = AssistantItem | UserItem | ErrorItem | NoticeItem;

export interface SessionState {
  init?: InitReply;
  items: ChatItem[];
  /** A turn is running (between update_in_progress / first output and update_completed). */
  busy: boolean;
  cancelling: boolean;
  /** Key of the assistant bubble of the running turn. */
  turnKey?: string;
  /** Latest update_file line, shown while the turn runs. */
  statusLine?: string;
  hitl?: HitlPending;
  sandbox?: SandboxStatus;
  /** The last stage reached before provisioning failed (shown as the failed step). */
  sandboxFailedAt?: SandboxStatus["stage"];
  /** Bumped on every update_completed: the preview reloads when it changes. */
  previewReloads: number;
  /** Public path -> how many times the agent wrote it (the code pane compares counters). */
  agentWrites: Record<string, number>;
  /** Public path -> how many History restores changed it (so the code pane can say which). */
  restoreWrites: Record<string, number>;
  lastUsage?: Usage;
  /** The project's model (its id in `init.models`): the agent's, or the picker's choice. */
  model?: string;
  /** The project's tokens and cost so far (INIT, then every `usage`). */
  projectSpend?: SpendSummary;
  /** Bumped whenever the checkpoint list may have changed (a turn ended, a restore). */
  historyVersion: number;
  /** Prompts waiting behind the running turn (the server's `queue`, or sent just now). */
  queued: QueuedPrompt[];
  /** Cursor of older turns (`GET /api/projects/{id}/turns?before=`); none: all are shown. */
  olderTurns?: number;
  /** The running turn (`turn_started`), for its stop marker. */
  turnId?: string;
}

export const initialSession: SessionState = {
  items: [],
  busy: false,
  cancelling: false,
  previewReloads: 0,
  agentWrites: {},
  restoreWrites: {},
  historyVersion: 0,
  queued: [],
};

export type LocalAction =
  | { type: "local/user"; key: string; text: string; blocks?: ContentBlock[] }
  | { type: "local/cancel" }
  | { type: "local/hitl_answered" }
  | { type: "local/model"; id: string }
  | { type: "local/error"; key: string; code: string; detail?: string }
  | { type: "local/dequeue"; id: string }
  | { type: "local/older"; page: { turns: TurnRecord[]; before?: number | null } };

export type SessionAction = { type: "server"; msg: ServerMessage } | LocalAction;

const WRITE_TOOLS = new Set(["write_file", "edit_file", "create_file", "delete_file", "write", "edit"]);

function hash(text: string): string {
  let h = 5381;
  for (let i = 0; i < text.length; i++) h = ((h << 5) + h) ^ text.charCodeAt(i);
  return (h >>> 0).toString(36);
}

function newAssistant(key: string, serverId?: string): AssistantItem {
  return {
    kind: "assistant",
    key,
    serverIds: serverId ? [serverId] : [],
    text: "",
    final: false,
    runs: {},
    timeline: [],
  };
}

function replaceItem(state: SessionState, item: ChatItem): SessionState {
  return { ...state, items: state.items.map((it) => (it.key === item.key ? item : it)) };
}

/**
 * Find the assistant bubble for server id `id`, adopting the running turn's still-anonymous
 * bubble, or appending a new one. A message for an unknown bubble while no turn is known to
 * run means the turn started before this page loaded (reload mid-turn): mark busy.
 */
function bubbleFor(state: SessionState, id: string | undefined): [SessionState, AssistantItem] {
  if (id) {
    const found = state.items.find(
      (it): it is AssistantItem => it.kind === "assistant" && it.serverIds.includes(id),
    );
    if (found) return [state, found];
  }
  const turn = state.items.find(
    (it): it is AssistantItem => it.kind === "assistant" && it.key === state.turnKey,
  );
  if (turn && (id === undefined || turn.serverIds.length === 0)) {
    if (id === undefined) return [state, turn];
    const adopted = { ...turn, serverIds: [id] };
    return [replaceItem(state, adopted), adopted];
  }
  const fresh = newAssistant(id ? `a-${id}` : `a-${state.items.length}`, id);
  return [{ ...state, items: [...state.items, fresh], busy: true, turnKey: fresh.key }, fresh];
}

function touchedPath(run: ToolRun): string | undefined {
  if (!WRITE_TOOLS.has(run.name)) return undefined;
  const input = run.input;
  if (typeof input !== "object" || input === null) return undefined;
  const rec = input as Record<string, unknown>;
  const path = rec.file_path ?? rec.path;
  if (typeof path !== "string" || path === "") return undefined;
  return path.startsWith("/") ? path : `/${path}`;
}

function applyTrace(state: SessionState, event: TraceEvent, ts: number): SessionState {
  if (event.phase === "reasoning_summary") {
    const [s, bubble] = bubbleFor(state, event.assistant_msg_id ?? undefined);
    const text = (event.text ?? "").replace(/^\[reasoning\]\s*/, "");
    const by = event.tags?.includes("model") ? "model" : "platform";
    return replaceItem(s, { ...bubble, reasoning: text, reasoningBy: by });
  }
  const isTool = ["tool_start", "tool_end", "tool_error", "tool_explain", "qa_check"].includes(
    event.phase,
  );
  if (!isTool) return state; // hook phases: not shown
  const [s, bubble] = bubbleFor(state, event.assistant_msg_id ?? undefined);
  const runId = event.run_id ?? `${event.tool_name}-${bubble.timeline.length}`;
  const existing = bubble.runs[runId];
  let run: ToolRun = existing ?? {
    runId,
    name: event.tool_name,
    status: "running",
    startedAt: ts,
  };
  const timeline = existing
    ? bubble.timeline
    : [...bubble.timeline, { runId, anchor: parseAssistantText(bubble.text).markdown.length }];
  const duration = event.duration_ms ?? Math.max(0, ts - run.startedAt);
  switch (event.phase) {
    case "tool_start":
      run = { ...run, input: event.input ?? run.input, status: "running" };
      break;
    case "tool_end":
      run = { ...run, output: event.output, status: "ok", durationMs: duration };
      break;
    case "tool_error":
      run = { ...run, error: event.error ?? String(event.output ?? "failed"), status: "error", durationMs: duration };
      break;
    case "tool_explain":
      run = { ...run, explanation: event.text ?? undefined };
      break;
    case "qa_check": {
      const out = event.output as { exit_code?: unknown } | undefined;
      const failed = event.error != null || (typeof out?.exit_code === "number" && out.exit_code !== 0);
      run = {
        ...run,
        input: event.input ?? run.input,
        output: event.output,
        error: event.error ?? undefined,
        status: event.output === undefined && event.error == null ? "running" : failed ? "error" : "ok",
        durationMs: event.output === undefined ? undefined : duration,
      };
      break;
    }
  }
  let next = replaceItem(s, { ...bubble, runs: { ...bubble.runs, [runId]: run }, timeline });
  // The file counts as changed when the write finished (tool_end carries no input: use the run's).
  const path = event.phase === "tool_end" ? touchedPath(run) : undefined;
  if (path !== undefined) {
    next = { ...next, agentWrites: { ...next.agentWrites, [path]: (next.agentWrites[path] ?? 0) + 1 } };
  }
  return next;
}

/** The chat rebuilt from stored turns: each turn's envelopes through the same reducer. */
function replayTurns(state: SessionState, turns: TurnRecord[]): SessionState {
  let s = state;
  for (const turn of turns) {
    for (const raw of turn.events ?? []) {
      const msg = decodeServerObject(raw);
      if (msg && msg.type !== "init") s = applyServer(s, msg);
    }
  }
  return s;
}

/** INIT of an agent that stores turns: the chat exactly as it was, the running turn live. */
function rebuildFromTurns(state: SessionState, init: InitReply): SessionState {
  const base: SessionState = {
    ...state,
    items: [],
    busy: false,
    cancelling: false,
    turnKey: undefined,
    turnId: undefined,
    statusLine: undefined,
    queued: [],
  };
  const turns = [...(init.turns ?? []), ...(init.running_turn ? [init.running_turn] : [])];
  const replayed = replayTurns(base, turns);
  const running = init.running_turn != null;
  return {
    ...replayed,
    // Replaying is not news: keep the counters that reload the preview and the file list.
    previewReloads: state.previewReloads,
    historyVersion: state.historyVersion,
    agentWrites: state.agentWrites,
    busy: running,
    turnKey: running ? replayed.turnKey : undefined,
    turnId: running ? replayed.turnId : undefined,
    cancelling: false,
    queued: init.queued ?? [],
    olderTurns: init.turns_before ?? undefined,
  };
}

function applyInit(state: SessionState, init: InitReply): SessionState {
  // An agent that stores turns (absent when there is nothing to show: old shape).
  if (init.turns != null || init.running_turn != null) {
    const rebuilt = rebuildFromTurns(state, init);
    return {
      ...rebuilt,
      init,
      hitl: init.hitl_pending ?? undefined,
      sandbox: { stage: "ready", sandbox_id: init.sandbox_id },
      model: init.model ?? state.model,
      projectSpend: init.spend ?? state.projectSpend,
    };
  }
  let items = state.items;
  const history = init.conversation_history ?? [];
  if (items.length === 0 && history.length > 0) {
    items = history.map((entry, idx): ChatItem => {
      const key = `history-${init.app_id}-${idx}-${hash(entry.text)}`;
      return entry.role === "user"
        ? { kind: "user", key, text: entry.text, images: [] }
        : { ...newAssistant(key), text: entry.text, final: true };
    });
  }
  return {
    ...state,
    init,
    items,
    hitl: init.hitl_pending ?? undefined,
    sandbox: { stage: "ready", sandbox_id: init.sandbox_id },
    model: init.model ?? state.model,
    projectSpend: init.spend ?? state.projectSpend,
  };
}

function lastPrompt(state: SessionState): UserItem | undefined {
  return [...state.items].reverse().find((it): it is UserItem => it.kind === "user");
}

function applyError(state: SessionState, key: string, data: ErrorData): SessionState {
  if (state.items.some((it) => it.key === key)) return state; // replayed and live: once
  // A stop is not an error: the same calm marker, once (agents that say it as an `error`).
  if (data.error === "cancelled" || data.error === "turn_cancelled") {
    return { ...noteStopped(state, `stopped-${state.turnId ?? key}`), cancelling: false };
  }
  const item: ErrorItem = {
    kind: "error",
    key,
    code: data.error,
    explanation: describeError(data.error, data.detail ?? undefined),
  };
  if (data.detail) item.detail = data.detail;
  if (data.qa_results) item.qaResults = data.qa_results;
  const prompt = isRetryable(data.error) ? lastPrompt(state) : undefined;
  if (prompt && prompt.author !== "system" && prompt.text) item.retry = { text: prompt.text };
  return { ...state, items: [...state.items, item], cancelling: false };
}

/** A prompt became the running turn: its bubble (once), out of the queue. */
function applyTurnStarted(state: SessionState, data: TurnStarted): SessionState {
  const queued = state.queued.filter((q) => q.id !== data.turn_id);
  const base = { ...state, queued, turnId: data.turn_id };
  if (data.trigger === "hitl_response") return base;
  if (state.items.some((it) => it.key === data.turn_id)) return base;
  const item: UserItem = {
    kind: "user",
    key: data.turn_id,
    text: data.text ?? "",
    images: [],
    author: data.author === "system" ? "system" : "user",
  };
  if (data.images) item.imageCount = data.images;
  return { ...base, items: [...state.items, item] };
}

/** One calm "Stopped" marker per stopped turn. */
function noteStopped(state: SessionState, key: string): SessionState {
  if (state.items.some((it) => it.kind === "notice" && it.tone === "stopped" && it.key === key)) return state;
  const last = state.items[state.items.length - 1];
  if (last?.kind === "notice" && last.tone === "stopped") return state;
  const item: NoticeItem = { kind: "notice", key, text: "Stopped. What was done so far is kept.", tone: "stopped" };
  return { ...state, items: [...state.items, item] };
}

/** Every tool card of the turn's bubble that never reported an end gets one. */
function closeRuns(state: SessionState, status: ToolStatus): SessionState {
  const items = state.items.map((it) => {
    if (it.kind !== "assistant") return it;
    const open = Object.values(it.runs).filter((r) => r.status === "running");
    if (open.length === 0) return it;
    const runs = { ...it.runs };
    for (const r of open) runs[r.runId] = { ...r, status };
    return { ...it, runs };
  });
  return { ...state, items };
}

function applyTurnEnded(state: SessionState, data: TurnEnded): SessionState {
  let s = closeRuns(state, data.outcome === "failed" ? "error" : "stopped");
  if (data.outcome === "cancelled") s = noteStopped(s, `stopped-${data.turn_id}`);
  return { ...s, busy: false, cancelling: false, turnKey: undefined, turnId: undefined };
}

/** The files were restored to a checkpoint: say so, reload the preview and changed files. */
function applyRestore(state: SessionState, notice: RestoreNotice, id: string): SessionState {
  const restoreWrites = { ...state.restoreWrites };
  for (const path of notice.changedPaths) restoreWrites[path] = (restoreWrites[path] ?? 0) + 1;
  const item: NoticeItem = { kind: "notice", key: `notice-${id}`, text: notice.text };
  return {
    ...state,
    items: [...state.items, item],
    restoreWrites,
    previewReloads: state.previewReloads + 1,
    historyVersion: state.historyVersion + 1,
  };
}

function applyServer(state: SessionState, msg: ServerMessage): SessionState {
  switch (msg.type) {
    case "init":
      return applyInit(state, msg.data);
    case "sandbox_status":
      if (msg.data.stage === "failed") {
        const reached = state.sandbox?.stage;
        return { ...state, sandbox: msg.data, sandboxFailedAt: reached && reached !== "failed" ? reached : "queued" };
      }
      return { ...state, sandbox: msg.data, sandboxFailedAt: undefined };
    case "update_in_progress": {
      if (state.items.some((it) => it.key === `turn-${msg.id}`)) return state;
      const bubble = newAssistant(`turn-${msg.id}`);
      return {
        ...state,
        items: [...state.items, bubble],
        busy: true,
        cancelling: false,
        turnKey: bubble.key,
        statusLine: undefined,
      };
    }
    case "agent_partial":
    case "agent_final": {
      const [s, bubble] = bubbleFor(state, msg.id);
      const text = msg.data.text ?? "";
      // Cumulative text: never let an out-of-order shorter partial shrink the bubble.
      const keep = msg.type === "agent_partial" && bubble.text.length > text.length && bubble.text.startsWith(text);
      return replaceItem(s, {
        ...bubble,
        text: keep ? bubble.text : text,
        final: bubble.final || msg.type === "agent_final",
      });
    }
    case "update_file":
      return { ...state, statusLine: msg.data.text };
    case "trace_event": {
      const notice = restoreNotice(msg.data);
      if (notice) return applyRestore(state, notice, msg.id);
      // Checkpoints are saved after the turn ended: the History list reloads once it is.
      if (isCheckpointSaved(msg.data)) return { ...state, historyVersion: state.historyVersion + 1 };
      return applyTrace(state, msg.data, msg.timestamp);
    }
    case "hitl_request":
      return { ...state, hitl: { interrupt_id: msg.data.interrupt_id, request: msg.data.request } };
    case "usage": {
      const s = {
        ...state,
        lastUsage: msg.data,
        projectSpend: msg.data.project ?? state.projectSpend,
        model: msg.data.model_id ?? state.model,
      };
      const turn = s.items.find(
        (it): it is AssistantItem => it.kind === "assistant" && it.key === s.turnKey,
      );
      // A turn without model output (the model was unreachable) gets no usage line.
      if (!msg.data.input_tokens && !msg.data.output_tokens) return s;
      const last = turn ?? [...s.items].reverse().find((it): it is AssistantItem => it.kind === "assistant");
      return last ? replaceItem(s, { ...last, usage: msg.data }) : s;
    }
    case "error":
      return applyError(state, `err-${msg.id}`, msg.data);
    case "update_completed": {
      // A tool that never reported its end was cut off: its card ends as stopped. Stopped
      // by the user: one calm marker (an agent with `turn_ended` says so itself, same key).
      let closed = closeRuns(state, "stopped");
      if (state.cancelling) closed = noteStopped(closed, `stopped-${state.turnId ?? msg.id}`);
      const items = closed.items
        .filter((it) => !(it.kind === "assistant" && it.key === state.turnKey && it.text === "" && it.timeline.length === 0 && !it.reasoning))
        .map((it) => (it.kind === "assistant" && it.key === state.turnKey ? { ...it, final: true } : it));
      return {
        ...state,
        items,
        busy: false,
        cancelling: false,
        turnKey: undefined,
        statusLine: undefined,
        previewReloads: state.previewReloads + 1,
        historyVersion: state.historyVersion + 1,
      };
    }
    case "turn_started":
      return applyTurnStarted(state, msg.data);
    case "turn_ended":
      return applyTurnEnded(state, msg.data);
    case "queue":
      return { ...state, queued: msg.data.items ?? [] };
    case "ping":
    case "pong":
      return state;
  }
}

/** The session reducer. */
export function reduce(state: SessionState, action: SessionAction): SessionState {
  switch (action.type) {
    case "server":
      return applyServer(state, action.msg);
    case "local/user": {
      if (state.busy) {
        // It waits behind the running turn: shown as queued until its turn starts.
        if (state.queued.some((q) => q.id === action.key)) return state;
        return { ...state, queued: [...state.queued, { id: action.key, text: action.text }] };
      }
      const images = (action.blocks ?? []).flatMap((b) =>
        b.type === "image" ? [{ mime_type: b.mime_type, base64: b.base64 }] : [],
      );
      const item: UserItem = { kind: "user", key: action.key, text: action.text, images };
      return { ...state, items: [...state.items, item] };
    }
    case "local/dequeue":
      return { ...state, queued: state.queued.filter((q) => q.id !== action.id) };
    case "local/older": {
      // Older turns go above what is shown: replay them alone, then put them first.
      const older = replayTurns({ ...initialSession, init: state.init }, action.page.turns);
      const known = new Set(state.items.map((it) => it.key));
      const items = older.items.filter((it) => !known.has(it.key));
      return { ...state, items: [...items, ...state.items], olderTurns: action.page.before ?? undefined };
    }
    case "local/cancel":
      return state.busy ? { ...state, cancelling: true } : state;
    case "local/hitl_answered":
      return { ...state, hitl: undefined, busy: true };
    case "local/model":
      return { ...state, model: action.id };
    case "local/error":
      return applyError(state, action.key, { error: action.code, detail: action.detail ?? null });
  }
}

/** Whether the prompt input accepts a new message (during a turn it is queued). */
export function canSend(state: SessionState, connected: boolean): boolean {
  return connected && state.init !== undefined && state.hitl === undefined;
}

/** The models the picker offers (none: an agent without the extension, or no loop). */
export function modelChoices(state: SessionState): ModelChoice[] {
  return state.init?.models ?? [];
}
