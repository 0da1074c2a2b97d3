import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ServerMessage } from "../protocol/messages";
import { AgentSocket, type ConnectionStatus } from "./socket";

/** A scripted stand-in for the browser WebSocket. */
class FakeWebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static instances: FakeWebSocket[] = [];
  readyState = FakeWebSocket.CONNECTING;
  sent: { type: string; data: Record<string, unknown> }[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;

  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }
  send(text: string) {
    this.sent.push(JSON.parse(text) as { type: string; data: Record<string, unknown> });
  }
  close(code = 1000, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
  // test helpers
  open() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen?.();
  }
  receive(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code: number) {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason: "" });
  }
}

const frame = (type: string, id: string, data: object = {}) => ({ id, type, data, timestamp: 1, session_id: "s" });

describe("AgentSocket", () => {
  let received: ServerMessage[];
  let statuses: ConnectionStatus[];
  let socket: AgentSocket;

  beforeEach(() => {
    vi.useFakeTimers();
    FakeWebSocket.instances = [];
    vi.stubGlobal("WebSocket", FakeWebSocket);
    received = [];
    statuses = [];
    socket = new AgentSocket({
      url: "ws://agent/ws",
      sessionId: "s",
      init: { thinking_level: "think" },
      onMessage: (m) => received.push(m),
      onStatus: (s) => statuses.push(s),
    });
  });
  afterEach(() => {
    socket.dispose();
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it("sends init with the session id on every (re)connect", () => {
    socket.connect();
    const first = FakeWebSocket.instances[0] as FakeWebSocket;
    first.open();
    expect(first.sent).toEqual([{ id: expect.any(String), type: "init", data: { thinking_level: "think", session_id: "s" }, timestamp: expect.any(Number) }]);
    first.drop(1006);
    expect(statuses.at(-1)).toMatchObject({ kind: "waiting", attempt: 1 });
    vi.advanceTimersByTime(1200);
    const second = FakeWebSocket.instances[1] as FakeWebSocket;
    second.open();
    expect(second.sent.map((m) => m.type)).toEqual(["init"]);
    expect(statuses.at(-1)).toEqual({ kind: "open" });
  });

  it("does not reconnect after a final close code", () => {
    socket.connect();
    const ws = FakeWebSocket.instances[0] as FakeWebSocket;
    ws.open();
    ws.drop(1008);
    vi.advanceTimersByTime(60000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(statuses.at(-1)).toMatchObject({ kind: "closed", code: 1008, final: true });
  });

  it("drops duplicates and never answers ping with ping", () => {
    socket.connect();
    const ws = FakeWebSocket.instances[0] as FakeWebSocket;
    ws.open();
    ws.receive(frame("trace_event", "t1", { phase: "tool_start", tool_name: "x" }));
    ws.receive(frame("trace_event", "t1", { phase: "tool_start", tool_name: "x" }));
    ws.receive(frame("ping", "p1"));
    ws.receive(frame("agent_partial", "a", { text: "a" }));
    ws.receive(frame("agent_partial", "a", { text: "ab" }));
    expect(received.map((m) => m.type)).toEqual(["trace_event", "agent_partial", "agent_partial"]);
    expect(ws.sent.map((m) => m.type)).toEqual(["init"]);
  });

  it("gives up after the retry budget and connects again on demand", () => {
    socket.connect();
    for (let i = 0; i < 9; i++) {
      (FakeWebSocket.instances.at(-1) as FakeWebSocket).drop(1006);
      vi.advanceTimersByTime(20000);
    }
    expect(statuses.at(-1)).toMatchObject({ kind: "closed", final: true });
    const count = FakeWebSocket.instances.length;
    socket.connect();
    expect(FakeWebSocket.instances).toHaveLength(count + 1);
  });

  it("sends keepalive pings while open", () => {
    socket.connect();
    const ws = FakeWebSocket.instances[0] as FakeWebSocket;
    ws.open();
    vi.advanceTimersByTime(30000);
    expect(ws.sent.map((m) => m.type)).toEqual(["init", "ping"]);
  });
});
