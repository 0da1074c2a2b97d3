/**
 * Pure helpers of the History panel and the chat notice of a restore: relative times,
 * readable errors, and the `trace_event` the agent broadcasts after a restore.
 */
import type { Checkpoint, SchemaRollback, SkippedFile } from "../api/http";
import type { TraceEvent } from "../protocol/messages";

/** `tool_name` of the `trace_event` announcing a restore. */
export const RESTORE_TRACE_TOOL = "restore_checkpoint";
/** `tool_name` of the `trace_event` announcing a checkpoint (saved after the turn ended). */
export const CHECKPOINT_TRACE_TOOL = "checkpoint";

/** Whether `event` says a new checkpoint was saved (the History list is out of date). */
export function isCheckpointSaved(event: TraceEvent): boolean {
  return event.tool_name === CHECKPOINT_TRACE_TOOL;
}

/** "12 bytes", "900 kB", "52 MB", "1.6 GB" (decimal units, as the agent writes them). */
export function formatBytes(size: number): string {
  for (const [unit, scale] of [
    ["GB", 1e9],
    ["MB", 1e6],
    ["kB", 1e3],
  ] as const) {
    if (size >= scale) {
      const value = size / scale;
      return `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ${unit}`;
    }
  }
  return `${size} bytes`;
}

/** The note under a checkpoint that left big files out (undefined when none was). */
export function skippedNote(skipped: SkippedFile[] | undefined): string | undefined {
  if (!skipped || skipped.length === 0) return undefined;
  const shown = skipped.slice(0, 3).map((f) => `${f.path} (${formatBytes(f.bytes)})`);
  const more = skipped.length > 3 ? ` and ${skipped.length - 3} more` : "";
  return `Not saved in this checkpoint (too big): ${shown.join(", ")}${more}`;
}

/** "just now", "5 minutes ago", "3 hours ago", "2 days ago", or a date for older ones. */
export function relativeTime(unixSeconds: number, nowMs: number = Date.now()): string {
  const seconds = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? "" : "s"} ago`;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return plural(Math.max(1, Math.round(seconds / 60)), "minute");
  if (seconds < 86_400) return plural(Math.round(seconds / 3600), "hour");
  if (seconds < 7 * 86_400) return plural(Math.round(seconds / 86_400), "day");
  return new Date(unixSeconds * 1000).toLocaleDateString();
}

/** "1 file changed" / "3 files changed" / "no file changes". */
export function filesChanged(n: number): string {
  if (n === 0) return "no file changes";
  return `${n} file${n === 1 ? "" : "s"} changed`;
}

/** A sentence for a failed history request (by the API's error code). */
export function historyErrorMessage(code: string, detail?: string): string {
  switch (code) {
    case "turn_running":
      return "The agent is working. Restore once its turn has finished.";
    case "hitl_pending":
      return "Approve or reject the pending action first, then restore.";
    case "not_found":
      return "That checkpoint no longer exists. Reload the list and pick another one.";
    case "git_unavailable":
      return detail ?? "Checkpoints need git in the sandbox, and it is not installed there.";
    case "schema_rollback_impossible":
    case "schema_rollback_failed":
      return `The database schema could not be rolled back, so nothing was restored. ${detail ?? ""}`.trim();
    case "sandbox_unavailable":
    case "sandbox_timeout":
      return "The project's workspace is not available right now. Try again in a moment.";
    default:
      return detail ? `Something went wrong: ${detail}` : `Something went wrong (${code}).`;
  }
}

/** What a restore announcement carries (undefined if the event is not one). */
export interface RestoreNotice {
  text: string;
  changedPaths: string[];
}

export function restoreNotice(event: TraceEvent): RestoreNotice | undefined {
  if (event.tool_name !== RESTORE_TRACE_TOOL) return undefined;
  const out = (typeof event.output === "object" && event.output !== null ? event.output : {}) as Record<
    string,
    unknown
  >;
  const target = (typeof out.restored_to === "object" && out.restored_to !== null ? out.restored_to : {}) as Record<
    string,
    unknown
  >;
  const title = typeof target.title === "string" ? target.title : "";
  const paths = Array.isArray(out.changed_paths)
    ? out.changed_paths.filter((p): p is string => typeof p === "string")
    : [];
  const files = title ? `Project files restored to “${title}”.` : "Project files restored to an earlier checkpoint.";
  const schema = schemaRollbackText(out.schema_rollback as SchemaRollback | undefined);
  return { text: schema ? `${files} ${schema}` : files, changedPaths: paths };
}

/** Title prefix of the checkpoint of a schema change applied in the database pane. */
export const SCHEMA_CHECKPOINT_PREFIX = "Database schema update";

/** The schema-change checkpoints newer than `target` (`items` newest first): what a restore
 * of `target` rolls back in the database. */
export function schemaChangesAfter(items: Checkpoint[], target: Checkpoint): Checkpoint[] {
  const at = items.findIndex((c) => c.sha === target.sha);
  return (at < 0 ? [] : items.slice(0, at)).filter((c) => c.title.startsWith(SCHEMA_CHECKPOINT_PREFIX));
}

/** A sentence on what a restore did to the database schema ("" when it had nothing to do). */
export function schemaRollbackText(schema: SchemaRollback | undefined): string {
  if (!schema || typeof schema !== "object") return "";
  const back = schema.not_reapplied ?? [];
  const again = back.length
    ? ` Migration files that came back were not applied again (${back.join(", ")}): apply them from the Database pane.`
    : "";
  return `${rolledBackText(schema)}${again}`.trim();
}

function rolledBackText(schema: SchemaRollback): string {
  if (schema.status === "none") return "";
  if (schema.status === "rolled_back") {
    const n = schema.migrations.length;
    const lost = schema.data_lost.length ? ` Not recoverable: ${schema.data_lost.join("; ")}.` : "";
    return `The database schema was rolled back too (${n} change${n === 1 ? "" : "s"} undone: ${schema.steps.join("; ")}).${lost}`;
  }
  return `The database schema was not rolled back: ${schema.detail ?? schema.status}.`;
}
