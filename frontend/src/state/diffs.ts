/**
 * Pure helpers of the diff view (`GET …/checkpoints/<sha>/diff`): unified and side-by-side
 * rows with line numbers, one-line notes for files shown without hunks, and readable errors.
 */
import type { CheckpointDiff, DiffHunk, FileDiff } from "../protocol/types.gen";

export type LineKind = "context" | "add" | "del" | "note";

/** One line of a unified diff, with its numbers in the old and the new file. */
export interface UnifiedRow {
  kind: LineKind;
  oldNo?: number;
  newNo?: number;
  text: string;
}

/** One side of a side-by-side row (absent: nothing on that side). */
export interface Cell {
  kind: LineKind;
  no?: number;
  text: string;
}

export interface SplitRow {
  left?: Cell;
  right?: Cell;
}

const KIND: Record<string, LineKind> = { " ": "context", "+": "add", "-": "del", "\\": "note" };

/** The hunk's lines numbered as in the old and the new file. */
export function unifiedRows(hunk: DiffHunk): UnifiedRow[] {
  let oldNo = hunk.old_start;
  let newNo = hunk.new_start;
  return hunk.lines.map((line) => {
    const kind = KIND[line[0] ?? " "] ?? "context";
    const text = line.slice(1);
    if (kind === "context") return { kind, oldNo: oldNo++, newNo: newNo++, text };
    if (kind === "del") return { kind, oldNo: oldNo++, text };
    if (kind === "add") return { kind, newNo: newNo++, text };
    return { kind, text };
  });
}

/**
 * Side by side: context on both sides; a run of removed lines followed by added lines is
 * paired line by line (old on the left, new on the right), the longer run's rest alone.
 */
export function splitRows(hunk: DiffHunk): SplitRow[] {
  const rows: SplitRow[] = [];
  let dels: Cell[] = [];
  let adds: Cell[] = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++) rows.push({ left: dels[i], right: adds[i] });
    dels = [];
    adds = [];
  };
  for (const row of unifiedRows(hunk)) {
    if (row.kind === "del") {
      if (adds.length > 0) flush();
      dels.push({ kind: "del", no: row.oldNo, text: row.text });
    } else if (row.kind === "add") {
      adds.push({ kind: "add", no: row.newNo, text: row.text });
    } else {
      flush();
      if (row.kind === "note") rows.push({ left: { kind: "note", text: row.text }, right: { kind: "note", text: row.text } });
      else rows.push({ left: { kind: "context", no: row.oldNo, text: row.text }, right: { kind: "context", no: row.newNo, text: row.text } });
    }
  }
  flush();
  return rows;
}

/** Why a file is shown without lines (undefined when it has hunks to show). */
export function fileNote(file: FileDiff): string | undefined {
  if (file.binary) return "Binary file: not shown";
  if (file.too_large)
    return `Too large to show here (+${file.additions ?? 0} −${file.deletions ?? 0} lines). Open it in the Code tab.`;
  if ((file.hunks ?? []).length > 0) return undefined;
  if (file.status === "renamed") return "Renamed without changes";
  if (file.status === "copied") return "Copied without changes";
  if (file.status === "added") return "Empty file added";
  if (file.status === "deleted") return "Empty file deleted";
  return "No line changes (only the file's mode or type changed)";
}

/** "A", "M", "D", "R" … as a short badge, and its word for screen readers. */
export function statusBadge(file: FileDiff): { letter: string; word: string } {
  const word = file.status.replace("_", " ");
  const letter = file.status === "type_changed" ? "T" : file.status[0]!.toUpperCase();
  return { letter, word };
}

/** "3 files changed · +12 −4". */
export function diffSummary(diff: CheckpointDiff): string {
  const files = `${diff.files_changed} file${diff.files_changed === 1 ? "" : "s"} changed`;
  return `${files} · +${diff.additions} −${diff.deletions}`;
}

/** The note when something was left out of the diff (undefined when nothing was). */
export function truncatedNote(diff: CheckpointDiff): string | undefined {
  if (!diff.truncated) return undefined;
  const hidden = diff.files_changed - diff.files.length;
  if (hidden > 0) return `Too large to show in full: ${hidden} more file${hidden === 1 ? "" : "s"} changed.`;
  return "Too large to show in full: some files' changes are left out.";
}

/** A sentence for a failed diff request (by the API's error code). */
export function diffErrorMessage(code: string, detail?: string): string {
  switch (code) {
    case "not_found":
      return "That checkpoint no longer exists.";
    case "invalid_sha":
      return "That is not a checkpoint id.";
    case "git_unavailable":
      return detail ?? "Checkpoints need git in the sandbox, and it is not installed there.";
    case "sandbox_unavailable":
    case "sandbox_timeout":
      return "The project's workspace is not available right now. Try again in a moment.";
    default:
      return detail ? `Could not load the changes: ${detail}` : `Could not load the changes (${code}).`;
  }
}
