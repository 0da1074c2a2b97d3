import { describe, expect, it } from "vitest";
import { fingerprint, normaliseRuntimeError, RuntimeErrorDeduper } from "./runtimeErrors";
import { parseArgs } from "./components/HitlPanel";

describe("runtime errors from the preview", () => {
  it("normalises, truncates and fingerprints a bridge payload", () => {
    const info = normaliseRuntimeError({ kind: "window_error", message: "x".repeat(3000), stack: "at App" }, 42);
    expect(info?.message).toHaveLength(2000);
    expect(info?.ts_ms).toBe(42);
    expect(info?.fingerprint).toMatch(/^rt_[0-9a-f]+$/);
    expect(info?.fingerprint).toBe(fingerprint({ kind: "window_error", message: "x".repeat(2000), stack: "at App" }));
  });

  it("rejects payloads without a message", () => {
    expect(normaliseRuntimeError({ kind: "x" }, 0)).toBeUndefined();
    expect(normaliseRuntimeError("boom", 0)).toBeUndefined();
  });

  it("reports one fingerprint once per 10 minutes", () => {
    const d = new RuntimeErrorDeduper();
    expect(d.accept("rt_1", 0)).toBe(true);
    expect(d.accept("rt_1", 9 * 60 * 1000)).toBe(false);
    expect(d.accept("rt_1", 10 * 60 * 1000 + 1)).toBe(true);
  });
});

describe("HITL argument editing", () => {
  it("accepts a JSON object and explains anything else", () => {
    expect(parseArgs('{"command":"ls"}')).toEqual({ args: { command: "ls" } });
    expect(parseArgs("[1]")).toEqual({ error: "The arguments must be a JSON object ({…})." });
    expect("error" in parseArgs("{bad")).toBe(true);
  });
});

describe("project paths", () => {
  it("shows sandbox and host paths as project paths", async () => {
    const { projectPaths } = await import("./runtimeErrors");
    expect(projectPaths("Failed to parse /app/src/App.tsx:3:7")).toBe("Failed to parse /src/App.tsx:3:7");
    expect(projectPaths("/home/u/.local/share/amicable/sandboxes/sb-1/workspace/src/App.tsx")).toBe("/src/App.tsx");
    expect(projectPaths("see /apple and /application/x")).toBe("see /apple and /application/x");
  });
});

describe("open in new tab", () => {
  it("opens the app without the editor's bridge parameter", async () => {
    const { openUrl } = await import("./components/PreviewPane");
    expect(openUrl("http://p.preview.localhost:8080/", "/about")).toBe("http://p.preview.localhost:8080/about");
  });
});
