/**
 * Reconnect policy and message de-duplication of the agent WebSocket (pure, unit-tested).
 */

/** Close codes after which the editor never reconnects: normal, policy (auth), server error. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1008, 1011]);

export interface ReconnectPolicy {
  /** First retry delay in ms. */
  baseDelayMs: number;
  /** Upper bound of one delay in ms. */
  maxDelayMs: number;
  /** Retries after which the editor gives up and offers a manual "Reconnect". */
  maxAttempts: number;
}

export const DEFAULT_POLICY: ReconnectPolicy = {
  baseDelayMs: 1000,
  maxDelayMs: 15000,
  maxAttempts: 8,
};

/**
 * The delay before retry number `attempt` (1-based): base·2^(attempt-1), capped; `random`
 * (0..1) adds up to 20 % jitter so that many editors do not reconnect in lock-step.
 */
export function reconnectDelay(
  attempt: number,
  policy: ReconnectPolicy = DEFAULT_POLICY,
  random: number = 0,
): number {
  const exp = policy.baseDelayMs * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxDelayMs, exp);
  return Math.round(capped * (1 + 0.2 * random));
}

/**
 * Whether to retry after a close with `code`, having already retried `attempt` times.
 */
export function shouldReconnect(
  code: number,
  attempt: number,
  policy: ReconnectPolicy = DEFAULT_POLICY,
): boolean {
  if (FINAL_CLOSE_CODES.has(code)) return false;
  return attempt < policy.maxAttempts;
}

/** Message types whose repeated delivery is harmless (upserts by id) and must not be dropped. */
const UPSERT_TYPES: ReadonlySet<string> = new Set(["agent_partial", "agent_final", "update_file"]);

/**
 * Remembers the last `capacity` message keys and reports repeats.
 *
 * `agent_partial`/`agent_final`/`update_file` share one id per bubble and carry the
 * cumulative state, so they always pass; every other message is delivered once per id.
 */
export class MessageDeduper {
  private readonly seen = new Set<string>();
  private readonly order: string[] = [];

  constructor(private readonly capacity = 2000) {}

  /** True the first time a message is seen; false for a duplicate. */
  accept(type: string, id: string): boolean {
    if (UPSERT_TYPES.has(type)) return true;
    const key = `${type}:${id}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    this.order.push(key);
    if (this.order.length > this.capacity) {
      const oldest = this.order.shift();
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }
}
