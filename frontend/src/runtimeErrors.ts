/**
 * Runtime errors reported by the preview (`amicable_runtime_error` postMessage from the
 * injected bridge): truncated, fingerprinted and de-duplicated for 10 minutes before the
 * editor forwards them to the agent as `runtime_error` (as the existing editor does).
 */
import type { RuntimeErrorInfo } from "./protocol/messages";

const LIMITS = { message: 2000, stack: 8000, url: 2000, args_preview: 4000 } as const;
const DEDUPE_MS = 10 * 60 * 1000;
const MAX_REMEMBERED = 200;

/** "rt_" + the djb2-xor hash the existing editor uses. */
export function fingerprint(info: Pick<RuntimeErrorInfo, "kind" | "message" | "stack" | "url">): string {
  const text = `${info.kind}|${info.message}|${info.stack ?? ""}|${info.url ?? ""}`;
  let h = 5381;
  for (let i = 0; i < text.length; i++) h = ((h << 5) + h) ^ text.charCodeAt(i);
  return `rt_${(h >>> 0).toString(16)}`;
}

function cut(value: unknown, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  const s = typeof value === "string" ? value : JSON.stringify(value);
  return s.length > max ? s.slice(0, max) : s;
}

/** Normalise a bridge payload; undefined when it is not an error report. */
export function normaliseRuntimeError(payload: unknown, now: number): RuntimeErrorInfo | undefined {
  if (typeof payload !== "object" || payload === null) return undefined;
  const rec = payload as Record<string, unknown>;
  const message = cut(rec.message, LIMITS.message);
  if (!message) return undefined;
  const info: RuntimeErrorInfo = {
    kind: typeof rec.kind === "string" ? rec.kind : "window_error",
    message,
    ts_ms: typeof rec.ts_ms === "number" ? rec.ts_ms : now,
  };
  const stack = cut(rec.stack, LIMITS.stack);
  const url = cut(rec.url, LIMITS.url);
  const args = cut(rec.args_preview, LIMITS.args_preview);
  if (stack) info.stack = stack;
  if (url) info.url = url;
  if (args) info.args_preview = args;
  if (typeof rec.level === "string") info.level = rec.level;
  if (typeof rec.source === "string") info.source = rec.source;
  info.fingerprint = typeof rec.fingerprint === "string" ? rec.fingerprint : fingerprint(info);
  return info;
}

/** Remembers fingerprints for 10 minutes (at most 200). */
export class RuntimeErrorDeduper {
  private readonly seen = new Map<string, number>();

  /** True when `fp` was not reported in the last 10 minutes. */
  accept(fp: string, now: number): boolean {
    const last = this.seen.get(fp);
    if (last !== undefined && now - last < DEDUPE_MS) return false;
    this.seen.delete(fp);
    this.seen.set(fp, now);
    while (this.seen.size > MAX_REMEMBERED) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
    }
    return true;
  }
}
