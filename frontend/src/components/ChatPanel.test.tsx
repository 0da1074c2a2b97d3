// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import type { InitReply } from "../protocol/messages";
import { VIEWER_NOTE } from "../state/roles";
import { initialSession, type SessionState } from "../state/session";
import type { SessionHandle } from "../state/useSession";
import { byTestId, change, cleanup, queryTestId, render } from "../test/dom";
import { ChatPanel } from "./ChatPanel";

const INIT: InitReply = {
  url: "http://p1.preview.test/",
  sandbox_id: "sb",
  exists: true,
  app_id: "p1",
  template_id: "vite",
  project: { project_id: "p1", name: "Todo", slug: "todo", template_id: "vite" },
};

function session(state: Partial<SessionState>): SessionHandle {
  return {
    state: { ...initialSession, init: INIT, ...state },
    connection: { kind: "open" },
    dispatch: vi.fn(),
    send: vi.fn(() => true),
    reconnect: vi.fn(),
    chooseModel: vi.fn(),
  };
}

afterEach(cleanup);

describe("chat panel for a viewer", () => {
  it("shows the note instead of the prompt input", () => {
    render(<ChatPanel session={session({})} onSend={() => true} readOnly />);
    expect(queryTestId("chat-input")).toBeNull();
    expect(queryTestId("chat-send")).toBeNull();
    expect(queryTestId("viewer-note")?.textContent).toBe(VIEWER_NOTE);
  });

  it("leaves a pending approval to someone who can edit, and offers no Stop", () => {
    const pending = { interrupt_id: "int-1", request: { action_requests: [], review_configs: [] } } as unknown as SessionState["hitl"];
    render(<ChatPanel session={session({ hitl: pending, busy: true })} onSend={() => true} readOnly />);
    expect(queryTestId("hitl-waiting")).not.toBeNull();
    expect(queryTestId("hitl-panel")).toBeNull();
    expect(queryTestId("chat-cancel")).toBeNull();
  });

  it("keeps the composer for editors", () => {
    render(<ChatPanel session={session({})} onSend={() => true} />);
    expect(queryTestId("chat-input")).not.toBeNull();
    expect(queryTestId("viewer-note")).toBeNull();
  });
});

const MODELS = [
  { id: "anthropic:claude-sonnet-5-5", label: "Claude Sonnet", provider: "anthropic", price_input_per_mtok: 3, price_output_per_mtok: 15 },
  { id: "local", label: "Qwen (Ollama)", provider: "openai", images: false, price_input_per_mtok: 0, price_output_per_mtok: 0 },
];

describe("model picker and running cost", () => {
  it("offers the deployment's models, shows the project's and reports a choice", () => {
    const handle = session({ init: { ...INIT, models: MODELS, model: "local" }, model: "local" });
    render(<ChatPanel session={handle} onSend={() => true} />);
    const picker = byTestId<HTMLSelectElement>("model-picker");
    expect(picker.value).toBe("local");
    expect(Array.from(picker.options).map((o) => o.textContent)).toEqual([
      "Claude Sonnet · $3/$15 per Mtok",
      "Qwen (Ollama)",
    ]);
    change(picker, "anthropic:claude-sonnet-5-5");
    expect(handle.chooseModel).toHaveBeenCalledWith("anthropic:claude-sonnet-5-5");
  });

  it("hides the picker without a choice and locks it while a turn runs", () => {
    render(<ChatPanel session={session({ init: { ...INIT, models: MODELS.slice(0, 1) } })} onSend={() => true} />);
    expect(queryTestId("model-picker")).toBeNull();
    cleanup();
    render(<ChatPanel session={session({ init: { ...INIT, models: MODELS }, busy: true })} onSend={() => true} />);
    expect(byTestId<HTMLSelectElement>("model-picker").disabled).toBe(true);
  });

  it("shows the project's running cost, the last turn in the tooltip", () => {
    const usage = { input_tokens: 900, output_tokens: 100, cost_usd: 0.0042 };
    const state = { projectSpend: { cost_usd: 0.0421, input_tokens: 12000, output_tokens: 345 }, lastUsage: usage };
    render(<ChatPanel session={session(state)} onSend={() => true} />);
    const total = byTestId("usage-total");
    // One token format everywhere (the bubbles' usage line reads the same).
    expect(total.textContent).toBe("Project: $0.0421 · 12,000 in · 345 out");
    expect(total.title).toBe("Last turn: 900 in · 100 out · $0.0042");
  });
});

describe("honest chat states", () => {
  it("Retry sends the same prompt again; a stopped tool card says Stopped; input reads as key/values", async () => {
    const { click } = await import("../test/dom");
    const onSend = vi.fn(() => true);
    const state: Partial<SessionState> = {
      items: [
        { kind: "user", key: "u", text: "make it blue", images: [] },
        {
          kind: "assistant",
          key: "a",
          serverIds: [],
          text: "On it.",
          final: true,
          runs: { r: { runId: "r", name: "execute", status: "stopped", input: { command: "npm run build" }, startedAt: 0 } },
          timeline: [{ runId: "r", anchor: 6 }],
        },
        {
          kind: "error",
          key: "e",
          code: "llm_connection",
          explanation: { title: "The model could not be reached", action: "Retry once it is back." },
          retry: { text: "make it blue" },
        },
      ],
    };
    render(<ChatPanel session={session(state)} onSend={onSend} />);
    expect(byTestId("tool-card").dataset.status).toBe("stopped");
    expect(byTestId("tool-card").textContent).toContain("Stopped");
    click(byTestId("tool-card").querySelector("button") as Element);
    expect(byTestId("tool-input").textContent).toBe("commandnpm run build");
    click(byTestId("error-retry"));
    expect(onSend).toHaveBeenCalledWith("make it blue", []);
  });

  it("shows queued prompts with a remove button that tells the agent", async () => {
    const { click } = await import("../test/dom");
    const handle = session({ busy: true, queued: [{ id: "c-2", text: "then this" }] });
    render(<ChatPanel session={handle} onSend={() => true} />);
    expect(byTestId("queued-prompt").textContent).toContain("then this");
    click(byTestId("queued-remove"));
    expect(handle.send).toHaveBeenCalledWith("dequeue", { id: "c-2" });
    expect(handle.dispatch).toHaveBeenCalledWith({ type: "local/dequeue", id: "c-2" });
  });

  it("offers suggested prompts in an empty chat, and no second 'waiting' line when disconnected", async () => {
    const { click } = await import("../test/dom");
    const onSend = vi.fn(() => true);
    render(<ChatPanel session={session({})} onSend={onSend} />);
    click(byTestId("suggestion"));
    expect(onSend).toHaveBeenCalledTimes(1);
    cleanup();
    render(<ChatPanel session={{ ...session({}), connection: { kind: "closed", code: 1006, reason: "", final: false } }} onSend={onSend} />);
    expect(byTestId<HTMLTextAreaElement>("chat-input").placeholder).toBe("");
    expect(byTestId("connection").textContent).toContain("Disconnected");
  });
});
