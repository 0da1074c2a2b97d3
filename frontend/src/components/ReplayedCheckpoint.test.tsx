// @vitest-environment jsdom
/**
 * A reopened project keeps each turn's "View changes": the agent stores a turn's checkpoint
 * `trace_event` (taken after the turn ended) at the end of that turn's record, and the replay
 * attaches it to the turn's bubble as the live chat did.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { decodeServerFrame } from "../protocol/messages";
import { initialSession, reduce, type SessionState } from "../state/session";
import type { SessionHandle } from "../state/useSession";
import { allTestId, cleanup, click, render } from "../test/dom";
import { ChatPanel } from "./ChatPanel";

const SID = "p1";
const INIT = {
  url: "http://p1.preview.test/",
  sandbox_id: "sb",
  exists: true,
  app_id: SID,
  template_id: "vite",
  project: { project_id: SID, name: "Todo", slug: "todo", template_id: "vite" },
};

function env(type: string, data: object, id: string) {
  return { id, type, data, timestamp: 1000, session_id: SID };
}

/** A stored turn; `sha`: the checkpoint the agent appended to its record after it ended. */
function storedTurn(id: string, prompt: string, seq: number, sha?: string, files = 1) {
  const events = [
    env("turn_started", { turn_id: id, trigger: "user", text: prompt, author: "user", images: 0 }, `${id}-s`),
    env("update_in_progress", {}, `${id}-u`),
    env("agent_final", { text: `Did ${prompt}.` }, `${id}-a`),
    env("update_completed", {}, `${id}-c`),
    env("turn_ended", { turn_id: id, outcome: "finished" }, `${id}-e`),
  ];
  if (sha) {
    const output = { sha, title: prompt, files_changed: files, skipped: [] };
    events.push(env("trace_event", { phase: "post_tool_use", tool_name: "checkpoint", output, text: `Checkpoint saved: ${prompt}` }, `${id}-k`));
  }
  return { turn_id: id, seq, events };
}

function replayed(turns: object[], running?: object): SessionState {
  const frame = JSON.stringify(env("init", { ...INIT, turns, running_turn: running ?? null }, "i"));
  const msg = decodeServerFrame(frame);
  if (!msg) throw new Error("init did not decode");
  return reduce(initialSession, { type: "server", msg });
}

function handle(state: SessionState): SessionHandle {
  return { state, connection: { kind: "open" }, dispatch: vi.fn(), send: vi.fn(() => true), reconnect: vi.fn(), chooseModel: vi.fn() };
}

afterEach(cleanup);

describe("a reopened project's turns", () => {
  it("show View changes on every turn that has a checkpoint, and only there", () => {
    const state = replayed([storedTurn("t1", "One", 1, "aaaa111"), storedTurn("t2", "Two", 2), storedTurn("t3", "Three", 3, "bbbb222", 2)]);
    const views = vi.fn();
    render(<ChatPanel session={handle(state)} onSend={() => true} onViewChanges={views} />);
    const buttons = allTestId("view-changes");
    expect(buttons.map((b) => b.dataset.sha)).toEqual(["aaaa111", "bbbb222"]);
    expect(buttons.map((b) => b.textContent)).toEqual(["View changes (1 file)", "View changes (2 files)"]);
    // each on its own turn's bubble: the first bubble has it, the second has none
    const bubbles = state.items.filter((i) => i.kind === "assistant");
    expect(bubbles.map((b) => (b.kind === "assistant" ? b.checkpoint?.sha : "x"))).toEqual(["aaaa111", undefined, "bbbb222"]);
    const first = buttons[0];
    if (!first) throw new Error("no button");
    click(first);
    expect(views).toHaveBeenCalledWith("aaaa111", "One");
  });

  it("keep the last finished turn's button while a new turn runs, and give the running one none", () => {
    const running = storedTurn("t2", "Two", 0).events.slice(0, 2);
    const state = replayed([storedTurn("t1", "One", 1, "aaaa111")], { turn_id: "t2", events: running });
    expect(state.busy).toBe(true);
    const bubbles = state.items.filter((i) => i.kind === "assistant");
    expect(bubbles.map((b) => (b.kind === "assistant" ? b.checkpoint?.sha : "x"))).toEqual(["aaaa111", undefined]);
  });

  it("of an older page show it too, and the newer turns keep theirs", () => {
    const state = replayed([storedTurn("t3", "Three", 3, "bbbb222")]);
    const older = reduce({ ...state, olderTurns: 3 }, { type: "local/older", page: { turns: [storedTurn("t1", "One", 1, "aaaa111")], before: null } });
    const bubbles = older.items.filter((i) => i.kind === "assistant");
    expect(bubbles.map((b) => (b.kind === "assistant" ? b.checkpoint?.sha : "x"))).toEqual(["aaaa111", "bbbb222"]);
  });
});
