import { describe, expect, it } from "vitest";
import {
  BridgeProbe,
  PROBE_GRACE_MS,
  previewLoadFailed,
  RuntimeErrorDeduper,
} from "./runtimeErrors";

describe("runtime-bridge probe", () => {
  it("an ack for the current load ends the cycle without a report", () => {
    const p = new BridgeProbe();
    const step = p.start("load", "http://preview/");
    expect(step.action).toBe("probe");
    if (step.action !== "probe") return;
    expect(step.waitMs).toBe(PROBE_GRACE_MS);
    expect(p.ack(step.probeId)).toBe(true);
    expect(p.timeout(step.probeId, 0)).toEqual({ action: "none" });
  });

  it("probes twice, then reports runtime_bridge_missing once with trigger and probe_id", () => {
    const p = new BridgeProbe();
    const first = p.start("load", "http://preview/x");
    if (first.action !== "probe") throw new Error("expected a probe");
    const second = p.timeout(first.probeId, 1);
    if (second.action !== "probe") throw new Error("expected a retry");
    expect(second.probeId).not.toBe(first.probeId);
    // The first try's timer firing late does nothing.
    expect(p.timeout(first.probeId, 2)).toEqual({ action: "none" });
    const last = p.timeout(second.probeId, 3);
    if (last.action !== "report") throw new Error("expected a report");
    expect(last.error.kind).toBe("runtime_bridge_missing");
    expect(last.error.url).toBe("http://preview/x");
    expect(last.error.extra).toEqual({
      trigger: "load",
      probe_id: second.probeId,
    });
    expect(last.error.message).toMatch(/amicable-runtime\.js/);
    expect(last.error.fingerprint).toMatch(/^rt_[0-9a-f]+$/);
    expect(p.timeout(second.probeId, 4)).toEqual({ action: "none" });
  });

  it("a late ack of the first try still counts", () => {
    const p = new BridgeProbe();
    const first = p.start("load", "u");
    if (first.action !== "probe") throw new Error("expected a probe");
    const second = p.timeout(first.probeId, 1);
    if (second.action !== "probe") throw new Error("expected a retry");
    expect(p.ack(first.probeId)).toBe(true);
    expect(p.timeout(second.probeId, 2)).toEqual({ action: "none" });
  });

  it("a new load (the starting page reloading itself) restarts the cycle; stale ids are ignored", () => {
    const p = new BridgeProbe();
    const starting = p.start("load", "u");
    if (starting.action !== "probe") throw new Error("expected a probe");
    const real = p.start("load", "u");
    if (real.action !== "probe") throw new Error("expected a probe");
    expect(p.timeout(starting.probeId, 1)).toEqual({ action: "none" });
    expect(p.ack(starting.probeId)).toBe(false);
    expect(p.ack(real.probeId)).toBe(true);
  });

  it("cancel forgets the cycle", () => {
    const p = new BridgeProbe();
    const s = p.start("load", "u");
    if (s.action !== "probe") throw new Error("expected a probe");
    p.cancel();
    expect(p.timeout(s.probeId, 1)).toEqual({ action: "none" });
    expect(p.ack(s.probeId)).toBe(false);
  });

  it("missing-bridge reports for one URL share a fingerprint, so the deduper passes one", () => {
    const d = new RuntimeErrorDeduper();
    const fps = [0, 1].map(() => {
      const p = new BridgeProbe();
      let step = p.start("load", "http://preview/");
      while (step.action === "probe") step = p.timeout(step.probeId, 5);
      if (step.action !== "report") throw new Error("expected a report");
      return step.error.fingerprint ?? "";
    });
    expect(fps[0]).toBe(fps[1]);
    expect(fps.filter((fp) => d.accept(fp, 0))).toHaveLength(1);
  });

  it("preview_load_failed is fingerprinted preview_<hash>", () => {
    const info = previewLoadFailed("http://preview/", 7);
    expect(info.kind).toBe("preview_load_failed");
    expect(info.fingerprint).toMatch(/^preview_[0-9a-f]+$/);
  });
});

describe("preview address bar", () => {
  it("shows bridge paths relative to the preview base path", async () => {
    const { relativePath } = await import("./components/PreviewPane");
    expect(
      relativePath("http://p.test/preview/abc/", "/preview/abc/boom?x=1"),
    ).toBe("/boom?x=1");
    expect(relativePath("http://p.test/preview/abc/", "/preview/abc")).toBe(
      "/",
    );
    expect(relativePath("http://p.test/", "/about")).toBe("/about");
    expect(relativePath("http://p.test/preview/abc/", "/preview/abcd")).toBe(
      "/preview/abcd",
    );
  });
});
