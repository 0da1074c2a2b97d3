/**
 * Runtime errors reported by the preview (`amicable_runtime_error` postMessage from the
 * injected bridge): truncated, fingerprinted and de-duplicated for 10 minutes before the
 * editor forwards them to the agent as `runtime_error` (as the existing editor does).
 */
import type { RuntimeErrorInfo } from "./protocol/messages";

const LIMITS = {
  message: 2000,
  stack: 8000,
  url: 2000,
  args_preview: 4000,
} as const;
const DEDUPE_MS = 10 * 60 * 1000;
const MAX_REMEMBERED = 200;

/** "rt_" + the djb2-xor hash the existing editor uses. */
export function fingerprint(
  info: Pick<RuntimeErrorInfo, "kind" | "message" | "stack" | "url">,
): string {
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
export function normaliseRuntimeError(
  payload: unknown,
  now: number,
): RuntimeErrorInfo | undefined {
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
  info.fingerprint =
    typeof rec.fingerprint === "string" ? rec.fingerprint : fingerprint(info);
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

/** How long the editor waits for `amicable_runtime_probe_ack` per try (as upstream). */
export const PROBE_GRACE_MS = 1500;
/** Tries per load before reporting: the router's 502 "starting" page has no bridge but reloads itself. */
export const PROBE_TRIES = 2;

/** What the editor should do next for the runtime-bridge probe. */
export type ProbeStep =
  | { action: "probe"; probeId: string; waitMs: number }
  | { action: "report"; error: RuntimeErrorInfo }
  | { action: "none" };

/** The synthetic error for an iframe `error` event (fingerprint `preview_<hash>`, as upstream). */
export function previewLoadFailed(url: string, now: number): RuntimeErrorInfo {
  const info: RuntimeErrorInfo = {
    kind: "preview_load_failed",
    message:
      "The preview iframe failed to load (the dev server may have crashed or be unreachable).",
    url: url.slice(0, LIMITS.url),
    ts_ms: now,
    source: "amicable-editor",
    level: "error",
  };
  info.fingerprint = fingerprint(info).replace(/^rt_/, "preview_");
  return info;
}

/**
 * The runtime-bridge probe as a pure state machine: after each iframe load the editor posts
 * `{type: "amicable_runtime_probe", probe_id}`; an ack for any probe of the current load ends
 * the cycle; without one within the grace period it probes once more, then reports
 * `runtime_bridge_missing`. A new load (e.g. the starting page reloading itself) restarts it.
 */
export class BridgeProbe {
  private cycle:
    { trigger: string; url: string; ids: string[]; done: boolean } | undefined;
  private seq = 0;

  /** Begin a cycle (after an iframe load): the first probe to post. */
  start(trigger: string, url: string): ProbeStep {
    this.cycle = { trigger, url, ids: [], done: false };
    return this.next();
  }

  /** An ack arrived from the preview origin; true when it belongs to the current cycle. */
  ack(probeId: string): boolean {
    if (!this.cycle || this.cycle.done || !this.cycle.ids.includes(probeId))
      return false;
    this.cycle.done = true;
    return true;
  }

  /** The grace period for `probeId` ran out. */
  timeout(probeId: string, now: number): ProbeStep {
    const c = this.cycle;
    if (!c || c.done || c.ids[c.ids.length - 1] !== probeId)
      return { action: "none" };
    if (c.ids.length < PROBE_TRIES) return this.next();
    c.done = true;
    const info: RuntimeErrorInfo = {
      kind: "runtime_bridge_missing",
      message:
        "The preview page did not answer the editor's runtime-bridge probe, so its runtime errors " +
        'cannot be reported. Keep <script src="/amicable-runtime.js"></script> in index.html ' +
        "and public/amicable-runtime.js in the project.",
      url: c.url.slice(0, LIMITS.url),
      ts_ms: now,
      source: "amicable-editor",
      level: "error",
      extra: { trigger: c.trigger, probe_id: probeId },
    };
    info.fingerprint = fingerprint(info);
    return { action: "report", error: info };
  }

  /** Forget the current cycle (the frame went away). */
  cancel(): void {
    this.cycle = undefined;
  }

  private next(): ProbeStep {
    const c = this.cycle;
    if (!c) return { action: "none" };
    this.seq += 1;
    const probeId = `probe_${Date.now().toString(36)}_${this.seq}`;
    c.ids.push(probeId);
    return { action: "probe", probeId, waitMs: PROBE_GRACE_MS };
  }
}

/** Sandbox paths (`/app/src/App.tsx`, a local sandbox's host directory) as project paths
 * (`/src/App.tsx`), as the agent writes them too. */
export function projectPaths(text: string): string {
  return text
    .replace(/(?:file:\/\/)?(?:\/[^\s'"():]*)?\/sandboxes\/[^/\s]+\/workspace(?=\/)/g, "")
    .replace(/(^|[\s'"([])(?:file:\/\/)?(?:\/@fs)?\/app(?=\/)/g, "$1");
}
