// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import type { InitReply } from "../protocol/messages";
import { VIEWER_NOTE } from "../state/roles";
import { initialSession, type SessionState } from "../state/session";
import type { SessionHandle } from "../state/useSession";
import { cleanup, queryTestId, render } from "../test/dom";
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
