/**
 * The chat as it happened: a reopened project rebuilt from stored turns, a reloaded tab
 * re-attached to the running turn, tool cards that always end, readable model errors.
 */
import { describe, expect, it } from "vitest";
import { decodeServerFrame, type ServerMessage } from "../protocol/messages";
import { describeError } from "./errors";
import {
  canSend,
  initialSession,
  reduce,
  type AssistantItem,
  type ErrorItem,
  type SessionState,
  type UserItem,
} from "./session";

const SID = "p1";

function env(type: string, data: object, id: string, timestamp = 1000) {
  return { id, type, data, timestamp, session_id: SID };
}

function msg(type: string, data: object, id: string, timestamp = 1000): ServerMessage {
  const decoded = decodeServerFrame(JSON.stringify(env(type, data, id, timestamp)));
  if (!decoded) throw new Error(type);
  return decoded;
}

function run(messages: ServerMessage[], start: SessionState = initialSession): SessionState {
  return messages.reduce((s, m) => reduce(s, { type: "server", msg: m }), start);
}

const BASE_INIT = {
  url: "http://p.localhost:8080/",
  sandbox_id: "sb",
  exists: true,
  app_id: SID,
  template_id: "vite",
  project: { project_id: SID, name: "P", slug: "p", template_id: "vite" },
  conversation_history: [
    { role: "user", text: "build it" },
    { role: "assistant", text: "I'll write it. Done." },
  ],
};

/** A finished turn as the agent stores it. */
function finishedTurn(id: string, prompt: string, seq: number) {
  return {
    turn_id: id,
    seq,
    events: [
      env("turn_started", { turn_id: id, trigger: "user", text: prompt, author: "user", images: 0 }, `${id}-s`),
      env("update_in_progress", {}, `${id}-u`),
      env("agent_partial", { text: "I'll write it." }, `${id}-a`),
      env("trace_event", { phase: "tool_start", tool_name: "execute", run_id: `${id}-r`, assistant_msg_id: `${id}-a`, input: { command: "npm run build" } }, `${id}-t1`, 1000),
      env("trace_event", { phase: "tool_end", tool_name: "execute", run_id: `${id}-r`, assistant_msg_id: `${id}-a`, output: "built" }, `${id}-t2`, 2500),
      env("agent_final", { text: "I'll write it. Done." }, `${id}-a`),
      env("trace_event", { phase: "reasoning_summary", tool_name: "reasoning_summary", text: "I ran 1 command(s).", tags: ["platform"], assistant_msg_id: `${id}-a` }, `${id}-t3`),
      env("usage", { input_tokens: 2400, output_tokens: 160, cost_usd: 0.0096, model: "m" }, `${id}-us`),
      env("update_completed", {}, `${id}-c`),
      env("turn_ended", { turn_id: id, outcome: "finished" }, `${id}-e`),
    ],
  };
}

function assistants(state: SessionState): AssistantItem[] {
  return state.items.filter((i): i is AssistantItem => i.kind === "assistant");
}

describe("a reopened project", () => {
  it("looks as it did: prompt, text around the tool card, usage, the platform's summary", () => {
    const start = { ...initialSession, previewReloads: 3 };
    const state = run([msg("init", { ...BASE_INIT, turns: [finishedTurn("t1", "build it", 4)] }, "i")], start);
    expect(state.items.map((i) => i.kind)).toEqual(["user", "assistant"]);
    expect((state.items[0] as UserItem).text).toBe("build it");
    const bubble = assistants(state)[0] as AssistantItem;
    expect(bubble.text).toBe("I'll write it. Done.");
    const run1 = bubble.runs["t1-r"];
    expect(run1?.status).toBe("ok");
    expect(run1?.input).toEqual({ command: "npm run build" });
    expect(run1?.durationMs).toBe(1500);
    // the card sits after the text streamed before it, not above it
    expect(bubble.timeline).toEqual([{ runId: "t1-r", anchor: "I'll write it.".length }]);
    expect(bubble.usage?.input_tokens).toBe(2400);
    expect(bubble.reasoningBy).toBe("platform");
    expect(state.busy).toBe(false);
    expect(state.previewReloads).toBe(3); // replaying is not a reason to reload the preview
    expect(state.olderTurns).toBeUndefined();
  });

  it("keeps a stop marker and closes the cut tool card, and offers older pages", () => {
    const stopped = {
      turn_id: "t2",
      seq: 9,
      events: [
        env("turn_started", { turn_id: "t2", trigger: "user", text: "slow", author: "user", images: 0 }, "s"),
        env("update_in_progress", {}, "u2"),
        env("trace_event", { phase: "tool_start", tool_name: "execute", run_id: "r2", input: { command: "sleep 9" } }, "x"),
        env("update_completed", {}, "c2"),
        env("turn_ended", { turn_id: "t2", outcome: "cancelled" }, "e2"),
      ],
    };
    const state = run([msg("init", { ...BASE_INIT, turns: [stopped], turns_before: 7 }, "i")]);
    const bubble = assistants(state)[0] as AssistantItem;
    expect(bubble.runs.r2?.status).toBe("stopped");
    const notes = state.items.filter((i) => i.kind === "notice" && i.tone === "stopped");
    expect(notes).toHaveLength(1);
    expect(state.items.some((i) => i.kind === "error")).toBe(false);
    expect(state.olderTurns).toBe(7);

    const older = reduce(state, { type: "local/older", page: { turns: [finishedTurn("t0", "first", 3)], before: null } });
    expect((older.items[0] as UserItem).text).toBe("first");
    expect(older.items.length).toBe(state.items.length + 2);
    expect(older.olderTurns).toBeUndefined();
  });

  it("an agent without stored turns still gets the plain history", () => {
    const state = run([msg("init", BASE_INIT, "i")]);
    expect(state.items.map((i) => i.kind)).toEqual(["user", "assistant"]);
  });
});

describe("a reload mid-turn", () => {
  const running = {
    turn_id: "c-1",
    events: [
      env("turn_started", { turn_id: "c-1", trigger: "user", text: "slow one", author: "user", images: 0 }, "s"),
      env("update_in_progress", {}, "u"),
      env("agent_partial", { text: "Working" }, "a"),
      env("trace_event", { phase: "tool_start", tool_name: "execute", run_id: "r", assistant_msg_id: "a", input: { command: "npm i" } }, "t"),
    ],
  };
  const queued = [{ id: "c-2", text: "then this", trigger: "user", author: "user" }];

  it("shows the running turn live with Stop, and the queued prompt", () => {
    let state = run([msg("init", { ...BASE_INIT, running_turn: running, queued }, "i")]);
    expect(state.busy).toBe(true);
    expect(state.items.map((i) => i.kind)).toEqual(["user", "assistant"]);
    expect(state.queued.map((q) => q.text)).toEqual(["then this"]);
    expect(canSend(state, true)).toBe(true);
    // the stream goes on in the same bubble; a frame that was already in the snapshot is harmless
    state = run([msg("agent_partial", { text: "Working hard" }, "a"), msg("update_in_progress", {}, "u")], state);
    expect(assistants(state)).toHaveLength(1);
    expect(assistants(state)[0]?.text).toBe("Working hard");
    // the queued prompt starts: it leaves the queue and becomes the next bubble, once
    state = run(
      [
        msg("update_completed", {}, "c"),
        msg("turn_ended", { turn_id: "c-1", outcome: "finished" }, "e"),
        msg("queue", { items: [] }, "q"),
        msg("turn_started", { turn_id: "c-2", trigger: "user", text: "then this", author: "user", images: 0 }, "s2"),
      ],
      state,
    );
    expect(state.queued).toEqual([]);
    expect(state.items.filter((i) => i.kind === "user").map((i) => (i as UserItem).text)).toEqual(["slow one", "then this"]);
    expect(assistants(state)[0]?.runs.r?.status).toBe("stopped");
  });

  it("a prompt sent during a turn is queued here and becomes one bubble when it starts", () => {
    let state = run([msg("init", { ...BASE_INIT, running_turn: running }, "i")]);
    state = reduce(state, { type: "local/user", key: "local-1", text: "next" });
    expect(state.queued.map((q) => q.id)).toEqual(["local-1"]);
    expect(state.items.filter((i) => i.kind === "user")).toHaveLength(1);
    state = run([msg("queue", { items: [{ id: "local-1", text: "next" }] }, "q")], state);
    state = reduce(state, { type: "local/dequeue", id: "local-1" });
    expect(state.queued).toEqual([]);
  });
});

describe("honest states", () => {
  it("Stop closes a running execute card and says so once, calmly", () => {
    let state = run([
      msg("init", BASE_INIT, "i"),
      msg("turn_started", { turn_id: "c-9", trigger: "user", text: "go", author: "user", images: 0 }, "s"),
      msg("update_in_progress", {}, "u"),
      msg("trace_event", { phase: "tool_start", tool_name: "execute", run_id: "r", input: { command: "sleep 99" } }, "t"),
    ]);
    state = reduce(state, { type: "local/cancel" });
    state = run([msg("update_completed", {}, "c"), msg("turn_ended", { turn_id: "c-9", outcome: "cancelled" }, "e")], state);
    const bubble = assistants(state).at(-1) as AssistantItem;
    expect(bubble.runs.r?.status).toBe("stopped");
    const stops = state.items.filter((i) => i.kind === "notice" && i.tone === "stopped");
    expect(stops).toHaveLength(1);
    expect(state.items.some((i) => i.kind === "error")).toBe(false);
    expect(state.busy).toBe(false);
  });

  it("an unreachable model is a plain sentence with Retry, without a usage line", () => {
    const state = run([
      msg("init", BASE_INIT, "i"),
      msg("turn_started", { turn_id: "c-3", trigger: "user", text: "make it blue", author: "user", images: 0 }, "s"),
      msg("update_in_progress", {}, "u"),
      msg("error", { error: "llm_connection", detail: "the connection to the model API dropped; gave up after 3 attempts" }, "err"),
      msg("usage", { input_tokens: 0, output_tokens: 0, cost_usd: 0 }, "us"),
      msg("update_completed", {}, "c"),
    ]);
    const error = state.items.find((i): i is ErrorItem => i.kind === "error");
    expect(error?.explanation.title).toBe("The model could not be reached");
    expect(error?.explanation.action).toContain("kept");
    expect(error?.retry).toEqual({ text: "make it blue" });
    expect(assistants(state).some((a) => a.usage !== undefined)).toBe(false);
  });

  it("every model error code reads as a sentence, not as a code", () => {
    for (const code of ["llm_connection", "llm_timeout", "llm_rate_limited", "llm_overloaded", "llm_api_error", "llm_auth_failed", "llm_request_rejected", "llm_error"]) {
      const text = describeError(code, "detail");
      expect(text.title).not.toContain("llm");
      expect(text.action).not.toBe("See the details below.");
    }
  });

  it("an auto-heal turn is shown as the platform's prompt", () => {
    const state = run([
      msg("init", BASE_INIT, "i"),
      msg("turn_started", { turn_id: "t-h", trigger: "runtime_error", text: "Fix this error in the preview: boom", author: "system", images: 0 }, "s"),
      msg("error", { error: "llm_connection" }, "e"),
    ]);
    const prompt = state.items.find((i): i is UserItem => i.kind === "user" && i.key === "t-h");
    expect(prompt?.author).toBe("system");
    const error = state.items.find((i): i is ErrorItem => i.kind === "error");
    expect(error?.retry).toBeUndefined(); // the platform's prompt is not re-sent as yours
  });
});
