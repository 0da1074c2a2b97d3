import { describe, expect, it } from "vitest";
import { decodeServerFrame, type ServerMessage } from "../protocol/messages";
import { goldenFrame, goldenFrames } from "../test/golden";
import { canSend, initialSession, reduce, type AssistantItem, type SessionState } from "./session";

const SID = "0b7e6c2a-5d1f-4c8e-9a3b-2f6d8e1c4a70";

function msg(type: string, data: object, id: string, timestamp = 1000): ServerMessage {
  const decoded = decodeServerFrame(JSON.stringify({ id, type, data, timestamp, session_id: SID }));
  if (!decoded) throw new Error(`not a server message: ${type}`);
  return decoded;
}

function run(messages: ServerMessage[], start: SessionState = initialSession): SessionState {
  return messages.reduce((s, m) => reduce(s, { type: "server", msg: m }), start);
}

function golden(name: string): ServerMessage {
  const decoded = decodeServerFrame(goldenFrame("server", name));
  if (!decoded) throw new Error(name);
  return decoded;
}

function assistants(state: SessionState): AssistantItem[] {
  return state.items.filter((i): i is AssistantItem => i.kind === "assistant");
}

const INIT_NO_HITL = msg(
  "init",
  {
    url: "http://p.localhost:8080/",
    sandbox_id: "sb",
    exists: false,
    app_id: SID,
    template_id: "vite",
    project: { project_id: SID, name: "P", slug: "p", template_id: "vite" },
  },
  "i1",
);

describe("golden server frames", () => {
  it("every golden server frame decodes and reduces without error", () => {
    const frames = goldenFrames("server");
    expect(frames.size).toBeGreaterThanOrEqual(13);
    let state = initialSession;
    for (const [name, text] of frames) {
      const decoded = decodeServerFrame(text);
      expect(decoded, name).toBeDefined();
      expect(decoded?.type).toBe(name.split(".")[0]);
      state = reduce(state, { type: "server", msg: decoded as ServerMessage });
    }
    expect(state.init).toBeDefined();
  });

  it("init restores history and the pending approval", () => {
    const state = run([golden("init.json")]);
    expect(state.items.map((i) => i.kind)).toEqual(["user", "assistant"]);
    expect((state.items[1] as AssistantItem).text).toBe("I built a todo app with a list and an input.");
    expect(state.hitl?.interrupt_id).toBe("int-7f3a");
    expect(canSend(state, true)).toBe(false);
    expect(state.sandbox?.stage).toBe("ready");
  });

  it("a second init (reconnect) keeps the local chat instead of replacing it", () => {
    let state = run([INIT_NO_HITL]);
    state = reduce(state, { type: "local/user", key: "u1", text: "hello" });
    state = run([golden("init.json")], state);
    expect(state.items.map((i) => i.kind)).toEqual(["user"]);
  });

  it("tool start/end become one card grouped by run_id inside the assistant bubble", () => {
    const state = run([
      INIT_NO_HITL,
      golden("update_in_progress.json"),
      golden("agent_partial.json"),
      golden("trace_event.tool_start.json"),
      golden("trace_event.tool_end.json"),
      golden("agent_final.json"),
    ]);
    const [bubble] = assistants(state);
    expect(bubble).toBeDefined();
    expect(Object.keys(bubble?.runs ?? {})).toEqual(["run-1"]);
    const run1 = bubble?.runs["run-1"];
    expect(run1?.status).toBe("ok");
    expect(run1?.durationMs).toBe(12);
    expect(run1?.output).toBe("Replaced 1 occurrence");
    expect(bubble?.timeline).toEqual([{ runId: "run-1", anchor: "I'll add a toggle".length }]);
    expect(state.busy).toBe(true);
    expect(state.agentWrites["/src/components/Header.tsx"]).toBe(1);
  });

  it("qa_failed is shown as a readable error with the QA results", () => {
    const state = run([golden("error.qa_failed.json")]);
    const item = state.items[0];
    expect(item?.kind).toBe("error");
    if (item?.kind !== "error") return;
    expect(item.explanation.title).toMatch(/checks/);
    expect(item.qaResults?.map((r) => r.exit_code)).toEqual([0, 2]);
  });

  it("sandbox_status drives provisioning until init", () => {
    let state = run([golden("sandbox_status.json")]);
    expect(state.sandbox?.stage).toBe("starting_preview");
    state = run([INIT_NO_HITL], state);
    expect(state.sandbox?.stage).toBe("ready");
  });
});

describe("turn lifecycle", () => {
  it("cumulative partials replace the text; a stale shorter partial does not shrink it", () => {
    const state = run([
      INIT_NO_HITL,
      msg("update_in_progress", {}, "u"),
      msg("agent_partial", { text: "Hello" }, "plan"),
      msg("agent_partial", { text: "Hello world" }, "plan"),
      msg("agent_partial", { text: "Hello" }, "plan"),
    ]);
    expect(assistants(state).map((a) => a.text)).toEqual(["Hello world"]);
  });

  it("update_completed ends the turn, reloads the preview and drops an empty placeholder", () => {
    const state = run([INIT_NO_HITL, msg("update_in_progress", {}, "u"), msg("update_completed", {}, "c")]);
    expect(state.busy).toBe(false);
    expect(state.previewReloads).toBe(1);
    expect(assistants(state)).toHaveLength(0);
    expect(canSend(state, true)).toBe(true);
  });

  it("output for an unknown bubble after a reload marks the turn as running", () => {
    const state = run([INIT_NO_HITL, msg("agent_partial", { text: "Still working" }, "plan-9")]);
    expect(state.busy).toBe(true);
    expect(assistants(state)[0]?.text).toBe("Still working");
    // Sending during a turn is allowed: the prompt is queued behind it.
    expect(canSend(state, true)).toBe(true);
  });

  it("tool errors, durations from timestamps, usage and reasoning attach to the turn bubble", () => {
    const state = run([
      INIT_NO_HITL,
      msg("update_in_progress", {}, "u"),
      msg("trace_event", { phase: "tool_start", tool_name: "execute", input: { command: "npm test" }, run_id: "r1" }, "t1", 1000),
      msg("trace_event", { phase: "tool_error", tool_name: "execute", error: "exit 1", run_id: "r1" }, "t2", 3500),
      msg("trace_event", { phase: "reasoning_summary", tool_name: "reasoning", text: "[reasoning] I ran the tests." }, "t3"),
      msg("usage", { input_tokens: 10, output_tokens: 5, cost_usd: 0.01 }, "us"),
    ]);
    const [bubble] = assistants(state);
    expect(bubble?.runs.r1).toMatchObject({ status: "error", error: "exit 1", durationMs: 2500 });
    expect(bubble?.reasoning).toBe("I ran the tests.");
    expect(bubble?.usage?.output_tokens).toBe(5);
  });

  it("the project's model and running cost come from init and every usage", () => {
    const models = [{ id: "a", label: "A", provider: "openai" }];
    const spend = { cost_usd: 1.5, input_tokens: 100, output_tokens: 10 };
    let state = run([msg("init", { ...INIT_NO_HITL.data, models, model: "a", spend }, "i2")]);
    expect(state.model).toBe("a");
    expect(state.projectSpend?.cost_usd).toBe(1.5);
    state = reduce(state, { type: "local/model", id: "b" });
    expect(state.model).toBe("b");
    const project = { cost_usd: 1.75, input_tokens: 110, output_tokens: 15 };
    const usage = { input_tokens: 10, output_tokens: 5, cost_usd: 0.25, model_id: "b", project };
    state = run([msg("update_in_progress", {}, "u"), msg("usage", usage, "us")], state);
    expect(state.projectSpend).toEqual(project);
    expect(state.model).toBe("b");
    expect(state.lastUsage?.cost_usd).toBe(0.25);
  });

  it("a HITL request blocks sending until answered", () => {
    let state = run([INIT_NO_HITL, golden("hitl_request.json")]);
    expect(state.hitl?.request.action_requests).toHaveLength(2);
    expect(canSend(state, true)).toBe(false);
    state = reduce(state, { type: "local/hitl_answered" });
    expect(state.hitl).toBeUndefined();
    expect(state.busy).toBe(true);
  });

  it("cancel marks the turn as stopping until update_completed", () => {
    let state = run([INIT_NO_HITL, msg("update_in_progress", {}, "u")]);
    state = reduce(state, { type: "local/cancel" });
    expect(state.cancelling).toBe(true);
    state = run([msg("update_completed", {}, "c")], state);
    expect(state.cancelling).toBe(false);
    expect(state.busy).toBe(false);
  });
});

describe("decodeServerFrame", () => {
  it("ignores non-JSON and unknown types, accepts the legacy nested form", () => {
    expect(decodeServerFrame("not json")).toBeUndefined();
    expect(decodeServerFrame(JSON.stringify({ type: "load_code", data: {} }))).toBeUndefined();
    const nested = decodeServerFrame(JSON.stringify({ id: "x", data: { type: "agent_final", text: "hi" } }));
    expect(nested?.type).toBe("agent_final");
    expect(nested?.data).toEqual({ text: "hi" });
  });

  it("copies a top-level error into data", () => {
    const m = decodeServerFrame(JSON.stringify({ id: "e", type: "error", error: "boom", data: {} }));
    expect(m?.type === "error" && m.data.error).toBe("boom");
  });
});

describe("stop", () => {
  it("notes a stopped turn when the agent ends it without an error", () => {
    let state = run([INIT_NO_HITL, msg("update_in_progress", {}, "u"), msg("agent_partial", { text: "Half" }, "p")]);
    state = reduce(state, { type: "local/cancel" });
    state = run([msg("update_completed", {}, "c")], state);
    const last = state.items[state.items.length - 1];
    expect(last?.kind === "notice" && last.tone).toBe("stopped");
  });
});

describe("provisioning", () => {
  it("remembers the stage that failed", () => {
    const state = run([
      msg("sandbox_status", { stage: "queued" }, "s1"),
      msg("sandbox_status", { stage: "creating" }, "s2"),
      msg("sandbox_status", { stage: "failed", message: "no runtime" }, "s3"),
    ]);
    expect(state.sandbox?.stage).toBe("failed");
    expect(state.sandboxFailedAt).toBe("creating");
  });
});
