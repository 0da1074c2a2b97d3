/**
 * The editor's WebSocket to the agent: sends `init` on every (re)connect, answers `ping`
 * with `pong`, drops duplicate messages and reconnects with backoff (see reconnect.ts).
 */
import {
  decodeServerFrame,
  type ClientDataMap,
  type ClientMessageType,
  type ServerMessage,
} from "../protocol/messages";
import {
  DEFAULT_POLICY,
  MessageDeduper,
  reconnectDelay,
  shouldReconnect,
  type ReconnectPolicy,
} from "./reconnect";

export type ConnectionStatus =
  | { kind: "connecting"; attempt: number }
  | { kind: "open" }
  | { kind: "waiting"; attempt: number; retryAt: number }
  | { kind: "closed"; code: number; reason: string; final: boolean };

export interface AgentSocketOptions {
  url: string;
  sessionId: string;
  init: ClientDataMap["init"];
  onMessage: (msg: ServerMessage) => void;
  onStatus: (status: ConnectionStatus) => void;
  policy?: ReconnectPolicy;
  connectTimeoutMs?: number;
  keepaliveMs?: number;
}

/** One logical connection to one session, surviving transient network failures. */
export class AgentSocket {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private disposed = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private readonly dedupe = new MessageDeduper();
  private readonly policy: ReconnectPolicy;

  constructor(private opts: AgentSocketOptions) {
    this.policy = opts.policy ?? DEFAULT_POLICY;
  }

  /**
   * Change what `init` carries (the model picker's choice): sent now when the socket is
   * open, and on every reconnect. Returns whether it was sent now.
   */
  updateInit(patch: Partial<ClientDataMap["init"]>): boolean {
    this.opts.init = { ...this.opts.init, ...patch };
    return this.send("init", this.opts.init);
  }

  /** Open the socket (again); resets the retry counter. */
  connect(): void {
    if (this.disposed) return;
    this.clearTimers();
    this.attempt = 0;
    this.open();
  }

  private open(): void {
    const ws = new WebSocket(this.opts.url);
    this.ws = ws;
    this.opts.onStatus({ kind: "connecting", attempt: this.attempt });
    this.connectTimer = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close(4000, "connect timeout");
    }, this.opts.connectTimeoutMs ?? 10000);
    ws.onopen = () => {
      clearTimeout(this.connectTimer);
      this.attempt = 0;
      this.opts.onStatus({ kind: "open" });
      this.send("init", this.opts.init);
      clearInterval(this.keepalive);
      this.keepalive = setInterval(() => this.send("ping", {}), this.opts.keepaliveMs ?? 30000);
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      const msg = decodeServerFrame(event.data);
      if (msg === undefined) return;
      // Never answer ping with ping (the existing protocol's endless echo); the server's
      // ping needs no answer, our own keepalive pings are answered with pong.
      if (msg.type === "ping" || msg.type === "pong") return;
      if (!this.dedupe.accept(msg.type, msg.id)) return;
      this.opts.onMessage(msg);
    };
    ws.onclose = (event: CloseEvent) => {
      clearTimeout(this.connectTimer);
      clearInterval(this.keepalive);
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (this.disposed) return;
      if (shouldReconnect(event.code, this.attempt, this.policy)) {
        this.attempt += 1;
        const delay = reconnectDelay(this.attempt, this.policy, Math.random());
        this.opts.onStatus({ kind: "waiting", attempt: this.attempt, retryAt: Date.now() + delay });
        this.retryTimer = setTimeout(() => this.open(), delay);
      } else {
        this.opts.onStatus({
          kind: "closed",
          code: event.code,
          reason: event.reason,
          final: true,
        });
      }
    };
  }

  /** Send one message (session_id merged into data); false when not connected. `id`: the
   * frame's id (a prompt's, so its turn and queue entry carry it); a random one otherwise. */
  send<K extends ClientMessageType>(type: K, data: ClientDataMap[K], frameId?: string): boolean {
    const ws = this.ws;
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) return false;
    const id =
      frameId ??
      (typeof crypto !== "undefined" && "randomUUID" in crypto
        ? crypto.randomUUID()
        : `${Date.now()}-${Math.random()}`);
    ws.send(
      JSON.stringify({
        id,
        type,
        data: { ...data, session_id: this.opts.sessionId },
        timestamp: Date.now(),
      }),
    );
    return true;
  }

  /** Close for good (no reconnect). */
  dispose(): void {
    this.disposed = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws !== undefined && ws.readyState <= WebSocket.OPEN) ws.close(1000, "editor closed");
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.keepalive);
  }
}
