// @vitest-environment jsdom
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { CheckpointDiff } from "../protocol/types.gen";
import { diffSummary, fileNote, splitRows, truncatedNote, unifiedRows } from "../state/diffs";
import type { ServerMessage } from "../protocol/messages";
import { initialSession, reduce, type SessionAction } from "../state/session";
import { allTestId, byTestId, cleanup, click, queryTestId, render, stubFetch, waitForTestId } from "../test/dom";
import { DiffDialog, DiffView } from "./DiffView";

/** The agent's answer, exactly as the protocol's golden file has it. */
const GOLDEN: CheckpointDiff = JSON.parse(readFileSync(`${process.cwd()}/../tests/protocol/golden/http/CheckpointDiff.json`, "utf-8")) as CheckpointDiff;
const HUNK = GOLDEN.files[1]!.hunks![0]!;

function wide(matches: boolean) {
  vi.stubGlobal("matchMedia", (query: string) => ({
    matches,
    media: query,
    addEventListener: () => undefined,
    removeEventListener: () => undefined,
  }));
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("diff rows", () => {
  it("numbers unified lines as in the old and the new file", () => {
    expect(unifiedRows(HUNK)).toEqual([
      { kind: "context", oldNo: 1, newNo: 1, text: "one" },
      { kind: "del", oldNo: 2, text: "two" },
      { kind: "add", newNo: 2, text: "2" },
      { kind: "context", oldNo: 3, newNo: 3, text: "three" },
      { kind: "add", newNo: 4, text: "four" },
    ]);
  });

  it("pairs a removed run with the added run after it, side by side", () => {
    const hunk = { ...HUNK, lines: [" a", "-b", "-c", "+B", " d", "+e", "\\ No newline at end of file"] };
    expect(splitRows(hunk)).toEqual([
      { left: { kind: "context", no: 1, text: "a" }, right: { kind: "context", no: 1, text: "a" } },
      { left: { kind: "del", no: 2, text: "b" }, right: { kind: "add", no: 2, text: "B" } },
      { left: { kind: "del", no: 3, text: "c" }, right: undefined },
      { left: { kind: "context", no: 4, text: "d" }, right: { kind: "context", no: 3, text: "d" } },
      { left: undefined, right: { kind: "add", no: 4, text: "e" } },
      {
        left: { kind: "note", text: " No newline at end of file" },
        right: { kind: "note", text: " No newline at end of file" },
      },
    ]);
  });

  it("says why a file has no lines to show", () => {
    const [binary, text, big] = GOLDEN.files;
    expect(fileNote(binary!)).toBe("Binary file: not shown");
    expect(fileNote(text!)).toBeUndefined();
    expect(fileNote(big!)).toMatch(/^Too large to show here/);
    expect(fileNote({ path: "/x", status: "renamed", hunks: [] })).toBe("Renamed without changes");
    expect(diffSummary(GOLDEN)).toBe("3 files changed · +2 −1");
    expect(truncatedNote(GOLDEN)).toMatch(/some files' changes are left out/);
    expect(truncatedNote({ ...GOLDEN, files_changed: 5 })).toBe("Too large to show in full: 2 more files changed.");
    expect(truncatedNote({ ...GOLDEN, truncated: false })).toBeUndefined();
  });
});

describe("diff view", () => {
  it("is side by side on a wide screen, unified on a narrow one, and switchable", () => {
    wide(true);
    const { unmount } = render(<DiffView diff={GOLDEN} />);
    expect(byTestId("diff-view").dataset.layout).toBe("split");
    expect(queryTestId("diff-split")).not.toBeNull();
    click(byTestId("diff-layout-unified"));
    expect(byTestId("diff-view").dataset.layout).toBe("unified");
    unmount();
    wide(false);
    render(<DiffView diff={GOLDEN} />);
    expect(byTestId("diff-view").dataset.layout).toBe("unified");
    const files = allTestId("diff-file");
    expect(files.map((f) => f.dataset.path)).toEqual(["/public/logo.png", "/src/App.tsx", "/src/data.json"]);
    expect(files[0]!.textContent).toContain("Binary file: not shown");
    expect(files[2]!.textContent).toContain("/src/seed.json → /src/data.json");
    const lines = Array.from(files[1]!.querySelectorAll<HTMLElement>("tr[data-kind]"));
    expect(lines.map((l) => `${l.dataset.kind}:${l.querySelector(".diff-code")?.textContent}`)).toEqual([
      "context: one",
      "del:−two",
      "add:+2",
      "context: three",
      "add:+four",
    ]);
    expect(byTestId("diff-truncated").textContent).toMatch(/Too large to show in full/);
  });

  it("loads a checkpoint's diff, and says so when it is gone", async () => {
    const calls = stubFetch({
      [`GET /api/sandbox/p1/checkpoints/${GOLDEN.sha}/diff`]: { body: GOLDEN },
      "GET /api/sandbox/p1/checkpoints/abcdef0/diff": { status: 404, body: { error: "not_found" } },
    });
    const { unmount } = render(<DiffDialog projectId="p1" sha={GOLDEN.sha} onClose={() => undefined} />);
    await waitForTestId("diff-view");
    expect(byTestId("diff-dialog").textContent).toContain("Changes: Make the title blue");
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([`GET /api/sandbox/p1/checkpoints/${GOLDEN.sha}/diff`]);
    unmount();
    render(<DiffDialog projectId="p1" sha="abcdef0" onClose={() => undefined} />);
    expect((await waitForTestId("diff-error")).textContent).toBe("That checkpoint no longer exists.");
  });
});

function server(type: string, data: object, id: string): SessionAction {
  return { type: "server", msg: { type, data, id, session_id: "s", timestamp: 1000 } as ServerMessage };
}

describe("a turn's changes", () => {
  const checkpoint = (sha: string) =>
    server("trace_event", { phase: "post_tool_use", tool_name: "checkpoint", output: { sha, title: "Blue", files_changed: 2 } }, `t-${sha}`);

  it("are offered on the bubble of the turn the checkpoint saved", () => {
    let s = reduce(initialSession, server("update_in_progress", {}, "u1"));
    s = reduce(s, server("agent_final", { text: "Done" }, "a1"));
    s = reduce(s, server("update_completed", {}, "c1"));
    const first = s.items[0]!.key;
    // The next turn already started when the first one's checkpoint arrives.
    s = reduce(s, server("update_in_progress", {}, "u2"));
    s = reduce(s, checkpoint("a".repeat(40)));
    const bubbles = s.items.filter((it) => it.kind === "assistant");
    expect(bubbles.map((b) => [b.key === first, b.kind === "assistant" && b.checkpoint?.sha])).toEqual([
      [true, "a".repeat(40)],
      [false, undefined],
    ]);
    // A malformed sha from a confused server is not offered.
    expect(reduce(s, checkpoint("HEAD~1")).items).toEqual(s.items);
  });
});
