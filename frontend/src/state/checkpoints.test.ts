import { describe, expect, it } from "vitest";
import { decodeServerFrame, type ServerMessage } from "../protocol/messages";
import {
  filesChanged,
  formatBytes,
  historyErrorMessage,
  relativeTime,
  restoreNotice,
  schemaChangesAfter,
  schemaRollbackText,
  skippedNote,
} from "./checkpoints";
import { initialSession, reduce, type SessionState } from "./session";

const SID = "0b7e6c2a-5d1f-4c8e-9a3b-2f6d8e1c4a70";

function msg(type: string, data: object, id: string): ServerMessage {
  const decoded = decodeServerFrame(JSON.stringify({ id, type, data, timestamp: 1000, session_id: SID }));
  if (!decoded) throw new Error(`not a server message: ${type}`);
  return decoded;
}

function run(messages: ServerMessage[], start: SessionState = initialSession): SessionState {
  return messages.reduce((s, m) => reduce(s, { type: "server", msg: m }), start);
}

const checkpoint = (sha: string, title: string) => ({ sha, title, created_at: 1, files_changed: 1 });

const RESTORED = msg(
  "trace_event",
  {
    phase: "post_tool_use",
    tool_name: "restore_checkpoint",
    input: { sha: "a".repeat(40) },
    output: {
      checkpoint: checkpoint("b".repeat(40), "Restored to: Make it blue"),
      restored_to: checkpoint("a".repeat(40), "Make it blue"),
      saved: null,
      changed_paths: ["/src/App.tsx", "/src/Extra.tsx"],
      dependencies: "unchanged",
    },
    text: "[The user restored the project files to checkpoint aaaaaaa: Make it blue]",
  },
  "t1",
);

describe("relative times and labels", () => {
  const now = 1_700_000_000_000;
  it("says how long ago", () => {
    expect(relativeTime(now / 1000 - 10, now)).toBe("just now");
    expect(relativeTime(now / 1000 + 30, now)).toBe("just now");
    expect(relativeTime(now / 1000 - 60, now)).toBe("1 minute ago");
    expect(relativeTime(now / 1000 - 50 * 60, now)).toBe("50 minutes ago");
    expect(relativeTime(now / 1000 - 3 * 3600, now)).toBe("3 hours ago");
    expect(relativeTime(now / 1000 - 86_400, now)).toBe("1 day ago");
    expect(relativeTime(now / 1000 - 30 * 86_400, now)).toBe(new Date(now - 30 * 86_400_000).toLocaleDateString());
  });

  it("counts files and explains errors", () => {
    expect(filesChanged(0)).toBe("no file changes");
    expect(filesChanged(1)).toBe("1 file changed");
    expect(filesChanged(4)).toBe("4 files changed");
    expect(historyErrorMessage("turn_running")).toMatch(/agent is working/);
    expect(historyErrorMessage("git_unavailable", "no git here")).toBe("no git here");
    expect(historyErrorMessage("http_500")).toBe("Something went wrong (http_500).");
  });
});

describe("a restore announced by the agent", () => {
  it("is recognised only for the restore tool", () => {
    expect(restoreNotice({ phase: "post_tool_use", tool_name: "write_file" })).toBeUndefined();
    expect(restoreNotice({ phase: "post_tool_use", tool_name: "restore_checkpoint", output: "junk" })).toEqual({
      text: "Project files restored to an earlier checkpoint.",
      changedPaths: [],
    });
  });

  it("adds a chat notice, reloads the preview and the changed files, refreshes the history", () => {
    const before: SessionState = { ...initialSession, agentWrites: { "/src/App.tsx": 2 } };
    const after = run([RESTORED], before);
    expect(after.items).toEqual([
      { kind: "notice", key: "notice-t1", text: "Project files restored to “Make it blue”." },
    ]);
    expect(after.previewReloads).toBe(1);
    expect(after.historyVersion).toBe(1);
    // A restore is not the agent: the code pane says "restored from History" for these.
    expect(after.agentWrites).toEqual({ "/src/App.tsx": 2 });
    expect(after.restoreWrites).toEqual({ "/src/App.tsx": 1, "/src/Extra.tsx": 1 });
    expect(after.busy).toBe(false);
  });

  it("a finished turn refreshes the history too", () => {
    const after = run([msg("update_in_progress", {}, "u1"), msg("update_completed", {}, "u2")]);
    expect(after.historyVersion).toBe(1);
  });
});

describe("a checkpoint saved after the turn", () => {
  const SAVED = msg(
    "trace_event",
    {
      phase: "post_tool_use",
      tool_name: "checkpoint",
      output: { sha: "c".repeat(40), title: "Add a video", files_changed: 1, skipped: [] },
      text: "Checkpoint saved: Add a video",
    },
    "t2",
  );

  it("refreshes the history, and adds nothing to the chat", () => {
    const after = run([msg("update_in_progress", {}, "u1"), msg("update_completed", {}, "u2"), SAVED]);
    expect(after.historyVersion).toBe(2);
    expect(after.items.filter((it) => it.kind !== "assistant")).toEqual([]);
  });

  it("notes the files it left out", () => {
    expect(skippedNote(undefined)).toBeUndefined();
    expect(skippedNote([])).toBeUndefined();
    expect(skippedNote([{ path: "/media/video.bin", bytes: 1_610_612_736 }])).toBe(
      "Not saved in this checkpoint (too big): /media/video.bin (1.6 GB)",
    );
    const many = [1, 2, 3, 4, 5].map((i) => ({ path: `/f${i}.zip`, bytes: 60_000_000 }));
    expect(skippedNote(many)).toBe(
      "Not saved in this checkpoint (too big): /f1.zip (60 MB), /f2.zip (60 MB), /f3.zip (60 MB) and 2 more",
    );
    expect([12, 900_000, 52_428_800].map(formatBytes)).toEqual(["12 bytes", "900 kB", "52 MB"]);
  });
});

describe("a restore that rolls the database schema back", () => {
  const [latest, blue, , created] = [
    checkpoint("c".repeat(40), "Database schema update: 1 change(s): Add column customers.email"),
    checkpoint("b".repeat(40), "Make it blue"),
    checkpoint("e".repeat(40), "Database schema update: 1 change(s): Create table products"),
    checkpoint("a".repeat(40), "Project created"),
  ];
  const items = [latest, blue, checkpoint("e".repeat(40), "Database schema update: 1 change(s): Create table products"), created];

  it("the confirmation knows which schema changes are undone", () => {
    expect(schemaChangesAfter(items, created).map((c) => c.sha[0])).toEqual(["c", "e"]);
    expect(schemaChangesAfter(items, blue).map((c) => c.sha[0])).toEqual(["c"]);
    expect(schemaChangesAfter(items, latest)).toEqual([]);
    expect(schemaChangesAfter(items, checkpoint("f".repeat(40), "gone"))).toEqual([]);
  });

  it("says what was undone and what cannot come back", () => {
    const rolled = {
      status: "rolled_back",
      migrations: ["/db/migrations/2_b.sql", "/db/migrations/1_a.sql"],
      steps: ["Drop table products", "Drop column customers.email"],
      sql: [],
      data_lost: ["the rows of products are deleted"],
      detail: null,
    };
    expect(schemaRollbackText(rolled)).toBe(
      "The database schema was rolled back too (2 changes undone: Drop table products; Drop column customers.email). " +
        "Not recoverable: the rows of products are deleted.",
    );
    expect(schemaRollbackText({ ...rolled, status: "skipped", detail: "kept at your request" })).toBe(
      "The database schema was not rolled back: kept at your request.",
    );
    expect(schemaRollbackText({ ...rolled, status: "none" })).toBe("");
    expect(schemaRollbackText({ ...rolled, status: "none", not_reapplied: ["/db/migrations/1_a.sql"] })).toBe(
      "Migration files that came back were not applied again (/db/migrations/1_a.sql): apply them from the Database pane.",
    );
    expect(schemaRollbackText(undefined)).toBe("");
    const event = RESTORED.type === "trace_event" ? RESTORED.data : undefined;
    if (!event) throw new Error("not a trace event");
    const notice = restoreNotice({ ...event, output: { ...(event.output as object), schema_rollback: rolled } });
    expect(notice?.text).toMatch(/^Project files restored to “Make it blue”\. The database schema was rolled back too/);
    expect(historyErrorMessage("schema_rollback_failed", "The database refused to undo x")).toBe(
      "The database schema could not be rolled back, so nothing was restored. The database refused to undo x",
    );
  });
});
