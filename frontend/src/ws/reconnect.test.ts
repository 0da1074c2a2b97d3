import { describe, expect, it } from "vitest";
import { DEFAULT_POLICY, MessageDeduper, reconnectDelay, shouldReconnect } from "./reconnect";

describe("reconnect policy", () => {
  it("backs off exponentially from 1 s and caps the delay", () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(n))).toEqual([1000, 2000, 4000, 8000, 15000, 15000]);
  });

  it("adds at most 20 % jitter", () => {
    expect(reconnectDelay(1, DEFAULT_POLICY, 1)).toBe(1200);
    expect(reconnectDelay(1, DEFAULT_POLICY, 0.5)).toBe(1100);
  });

  it("never reconnects after 1000, 1008 or 1011", () => {
    for (const code of [1000, 1008, 1011]) expect(shouldReconnect(code, 0)).toBe(false);
  });

  it("reconnects after abnormal closes until the attempts are used up", () => {
    expect(shouldReconnect(1006, 0)).toBe(true);
    expect(shouldReconnect(1001, 3)).toBe(true);
    expect(shouldReconnect(4000, DEFAULT_POLICY.maxAttempts - 1)).toBe(true);
    expect(shouldReconnect(1006, DEFAULT_POLICY.maxAttempts)).toBe(false);
  });
});

describe("message de-duplication", () => {
  it("drops a repeated message id of the same type", () => {
    const d = new MessageDeduper();
    expect(d.accept("trace_event", "a")).toBe(true);
    expect(d.accept("trace_event", "a")).toBe(false);
    expect(d.accept("update_completed", "a")).toBe(true);
  });

  it("always passes cumulative upserts that share one id", () => {
    const d = new MessageDeduper();
    expect(d.accept("agent_partial", "plan")).toBe(true);
    expect(d.accept("agent_partial", "plan")).toBe(true);
    expect(d.accept("agent_final", "plan")).toBe(true);
  });

  it("forgets the oldest ids beyond its capacity", () => {
    const d = new MessageDeduper(2);
    d.accept("error", "1");
    d.accept("error", "2");
    d.accept("error", "3");
    expect(d.accept("error", "1")).toBe(true);
    expect(d.accept("error", "3")).toBe(false);
  });
});
