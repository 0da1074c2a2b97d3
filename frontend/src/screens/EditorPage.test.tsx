// @vitest-environment jsdom
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { Me } from "../api/auth";
import type { ProjectRole } from "../api/http";
import { AuthGate } from "../components/AuthGate";
import { AuthStore } from "../state/auth";
import { VIEWER_NOTE } from "../state/roles";
import { byTestId, change, cleanup, click, flush, queryTestId, render, stubFetch, waitForTestId, type FetchCall } from "../test/dom";
import { EditorPage } from "./EditorPage";

const PROJECT = { project_id: "p1", name: "Todo", slug: "todo", template_id: "vite" };
const ME: Me = { authenticated: true, mode: "oidc", user: { sub: "u-2", email: "bob@example.com", name: "Bob" } };

/** Answers `init` like the agent, and records what the editor sends. */
class FakeAgentSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static sent: { type: string; data: Record<string, unknown> }[] = [];
  readyState = FakeAgentSocket.CONNECTING;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;

  constructor(readonly url: string) {
    setTimeout(() => {
      this.readyState = FakeAgentSocket.OPEN;
      this.onopen?.();
    }, 0);
  }
  send(text: string) {
    const msg = JSON.parse(text) as { type: string; data: Record<string, unknown> };
    FakeAgentSocket.sent.push(msg);
    if (msg.type === "user") {
      // The owner made this user a viewer after the page loaded.
      const error = { id: "e1", type: "error", data: { error: "read_only" }, timestamp: 2, session_id: "p1" };
      setTimeout(() => this.onmessage?.({ data: JSON.stringify(error) }), 0);
    }
    if (msg.type !== "init") return;
    const data = { url: "http://p1.preview.test/", sandbox_id: "sb", exists: true, app_id: "p1", template_id: "vite", project: PROJECT };
    setTimeout(() => this.onmessage?.({ data: JSON.stringify({ id: "i1", type: "init", data, timestamp: 1, session_id: "p1" }) }), 0);
  }
  close() {
    this.readyState = FakeAgentSocket.CLOSED;
  }
}

let calls: FetchCall[];

function serve(role: ProjectRole | undefined) {
  calls = stubFetch({
    "GET /api/projects/by-slug/todo": { body: role ? { ...PROJECT, role } : PROJECT },
    "GET /api/sandbox/p1/ls?path=%2F": { body: { path: "/", entries: [{ path: "/index.html", name: "index.html", is_dir: false }] } },
    "GET /api/sandbox/p1/read?path=%2Findex.html": {
      body: { path: "/index.html", content: "<h1>hi</h1>", sha256: "x", is_binary: false },
    },
  });
}

async function openEditor(me: Me = ME) {
  render(
    <AuthGate store={new AuthStore(async () => me, me.mode)}>
      <EditorPage slug="todo" theme="dark" onToggleTheme={() => undefined} />
    </AuthGate>,
  );
  await flush();
}

beforeAll(() => {
  // jsdom does not lay out; CodeMirror measures text ranges.
  const rects = Object.assign([], { item: () => null }) as unknown as DOMRectList;
  Range.prototype.getClientRects = () => rects;
  Range.prototype.getBoundingClientRect = () => new DOMRect();
});

beforeEach(() => {
  FakeAgentSocket.sent = [];
  vi.stubGlobal("WebSocket", FakeAgentSocket);
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("viewer mode", () => {
  it("replaces the composer with a calm note and keeps the preview", async () => {
    serve("viewer");
    await openEditor();
    expect(queryTestId("chat-input")).toBeNull();
    expect(byTestId("viewer-note").textContent).toBe(VIEWER_NOTE);
    expect(byTestId("read-only-badge").textContent).toBe("View only");
    expect(byTestId("preview-frame").getAttribute("src")).toContain("http://p1.preview.test/");
    // Members are visible read-only; nothing to invite with.
    expect(queryTestId("share")).toBeNull();
    expect(byTestId("members").textContent).toContain("Members");
    expect(FakeAgentSocket.sent.map((m) => m.type)).toEqual(["init"]);
  });

  it("makes the Code pane read-only", async () => {
    serve("viewer");
    await openEditor();
    click(byTestId("tab-code"));
    await waitForTestId("tree-file", 1000); // the lazy CodeMirror chunk: slow to transform on a busy machine
    expect(byTestId("code-read-only").textContent).toBe("Read-only");
    expect(queryTestId("code-new-file")).toBeNull();
    expect(queryTestId("code-save")).toBeNull();
    click(byTestId("tree-file"));
    await flush();
    expect(byTestId("code-editor").dataset.readonly).toBe("true");
    expect(byTestId("code-editor").querySelector(".cm-content")?.getAttribute("aria-readonly")).toBe("true");
    expect(queryTestId("code-rename")).toBeNull();
    expect(queryTestId("code-delete")).toBeNull();
    expect(calls.some((c) => c.method !== "GET")).toBe(false);
  }, 30_000); // loads the lazy CodeMirror chunk: slow on a loaded machine (a limit, not a timing check)

  it("disables restoring in the history", async () => {
    serve("viewer");
    await openEditor();
    click(byTestId("history"));
    expect(byTestId("history-blocked").textContent).toMatch(/Ask the owner for edit access/);
  });

  it("lets an editor prompt, and shows Members (not Share)", async () => {
    serve("editor");
    await openEditor();
    expect(queryTestId("viewer-note")).toBeNull();
    expect(queryTestId("read-only-badge")).toBeNull();
    expect(byTestId<HTMLTextAreaElement>("chat-input").disabled).toBe(false);
    expect(queryTestId("share")).toBeNull();
    expect(queryTestId("members")).not.toBeNull();
  });

  it("switches to viewer mode when the agent answers read_only", async () => {
    serve("editor");
    await openEditor();
    change(byTestId<HTMLTextAreaElement>("chat-input"), "make it blue");
    click(byTestId("chat-send"));
    await flush();
    expect(byTestId("error-message").textContent).toContain("You can only view this project");
    expect(queryTestId("chat-input")).toBeNull();
    expect(queryTestId("viewer-note")).not.toBeNull();
  });

  it("gives the owner Share; an old agent without roles means owner", async () => {
    serve(undefined);
    await openEditor();
    expect(byTestId("share").textContent).toContain("Share");
    expect(queryTestId("viewer-note")).toBeNull();
  });

  it("adds no sharing without logins", async () => {
    serve("owner");
    await openEditor({ authenticated: true, mode: "none", user: { sub: "local" } });
    expect(queryTestId("share")).toBeNull();
    expect(queryTestId("members")).toBeNull();
    expect(queryTestId("user-menu")).toBeNull();
  });
});
