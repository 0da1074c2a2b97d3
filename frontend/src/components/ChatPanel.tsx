/** The chat column: connection state, messages, approvals and the prompt input. */
import { useEffect, useRef, useState } from "react";
import { turnsApi } from "../api/http";
import type { ContentBlock } from "../protocol/messages";
import { canSend, modelChoices } from "../state/session";
import { VIEWER_NOTE } from "../state/roles";
import type { SessionHandle } from "../state/useSession";
import { AssistantBubble, ErrorBubble, UserBubble } from "./Bubbles";
import { Composer } from "./Composer";
import { HitlPanel } from "./HitlPanel";
import { failureSentence } from "../state/errors";

/** What an empty chat offers to start with (a click fills the prompt and sends it). */
export const SUGGESTED_PROMPTS = [
  "A landing page for a coffee shop with a menu and opening hours",
  "A todo list with filters for done and open tasks",
  "A dashboard with a line chart of monthly sales",
  "Add a dark mode toggle to the header",
];

interface Props {
  session: SessionHandle;
  onSend: (text: string, blocks: ContentBlock[]) => boolean;
  /** A viewer: a calm note instead of the prompt input, approvals left to editors. */
  readOnly?: boolean;
}

function ConnectionPill({ session }: { session: SessionHandle }) {
  const c = session.connection;
  if (c.kind === "open") {
    return (
      <span className="pill ok" data-testid="connection" data-state="open">
        Connected
      </span>
    );
  }
  if (c.kind === "closed") {
    return (
      <span className="pill bad" data-testid="connection" data-state="closed" role="status">
        Disconnected{c.code === 1008 ? " (not allowed)" : ""}
        <button className="link-btn" onClick={session.reconnect} data-testid="reconnect">
          Reconnect
        </button>
      </span>
    );
  }
  return (
    <span className="pill warn" data-testid="connection" data-state={c.kind}>
      {c.kind === "waiting" ? `Reconnecting (try ${c.attempt})…` : "Connecting…"}
    </span>
  );
}

export function ChatPanel({ session, onSend, readOnly = false }: Props) {
  const { state } = session;
  const listRef = useRef<HTMLDivElement>(null);
  const stickRef = useRef(true);
  const connected = session.connection.kind === "open";
  // A turn paused for approval is not "working": no typing dots, no Stop.
  const working = state.busy && state.hitl === undefined;

  // Follow the stream only while the reader is at the bottom (no jumps while reading).
  useEffect(() => {
    const el = listRef.current;
    if (el && stickRef.current) el.scrollTop = el.scrollHeight;
  }, [state.items, state.hitl, state.busy]);

  const cancel = () => {
    if (session.send("cancel", {})) session.dispatch({ type: "local/cancel" });
  };
  const dequeue = (id: string) => {
    if (session.send("dequeue", { id })) session.dispatch({ type: "local/dequeue", id });
  };
  const [olderError, setOlderError] = useState<string | undefined>();
  const [loadingOlder, setLoadingOlder] = useState(false);
  const loadOlder = () => {
    const projectId = state.init?.app_id;
    const cursor = state.olderTurns;
    if (!projectId || cursor === undefined) return;
    setLoadingOlder(true);
    setOlderError(undefined);
    turnsApi(projectId)
      .before(cursor)
      .then((page) => session.dispatch({ type: "local/older", page: { turns: page.turns, before: page.before } }))
      .catch((err: unknown) => setOlderError(failureSentence(err)))
      .finally(() => setLoadingOlder(false));
  };
  const retry = (text: string) => {
    if (!readOnly) onSend(text, []);
  };

  return (
    <aside className="chat-panel" aria-label="Chat">
      <div className="chat-header">
        <span className="chat-title">Chat</span>
        <ConnectionPill session={session} />
      </div>
      <div
        className="chat-list"
        ref={listRef}
        data-testid="chat-list"
        aria-live="polite"
        // Scrollable: keyboard users must be able to focus it to scroll (axe: scrollable-region-focusable).
        tabIndex={0}
        role="log"
        aria-label="Messages"
        onScroll={(e) => {
          const el = e.currentTarget;
          stickRef.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
        }}
      >
        {state.olderTurns !== undefined && (
          <div className="chat-older">
            <button className="link-btn" data-testid="load-older" onClick={loadOlder} disabled={loadingOlder}>
              {loadingOlder ? "Loading earlier messages…" : "Show earlier messages"}
            </button>
            {olderError && <p className="form-error small">{olderError}</p>}
          </div>
        )}
        {state.items.length === 0 && (
          <div className="chat-empty muted">
            {state.init ? "Workspace ready. Describe what to build or change." : connected ? "Connecting to your workspace…" : ""}
            {state.init && !readOnly && canSend(state, connected) && (
              <div className="suggestions" data-testid="suggestions">
                {SUGGESTED_PROMPTS.map((prompt) => (
                  <button key={prompt} className="suggestion" data-testid="suggestion" onClick={() => onSend(prompt, [])}>
                    {prompt}
                  </button>
                ))}
              </div>
            )}
          </div>
        )}
        {state.items.map((item) => {
          switch (item.kind) {
            case "user":
              return <UserBubble key={item.key} item={item} />;
            case "assistant":
              return (
                <AssistantBubble
                  key={item.key}
                  item={item}
                  streaming={working && item.key === state.turnKey}
                />
              );
            case "error":
              return <ErrorBubble key={item.key} item={item} onRetry={readOnly || !connected ? undefined : retry} />;
            case "notice":
              return (
                <div
                  key={item.key}
                  className={`chat-notice muted small${item.tone ? ` ${item.tone}` : ""}`}
                  role="status"
                  data-testid={item.tone === "stopped" ? "stopped-note" : "chat-notice"}
                >
                  {item.text}
                </div>
              );
          }
        })}
        {state.queued.length > 0 && (
          <ul className="queued-list" data-testid="queued-list" aria-label="Queued prompts">
            {state.queued.map((q) => (
              <li key={q.id} className="queued" data-testid="queued-prompt">
                <span className="badge">Queued</span>
                <span className="queued-text">{q.author === "system" ? "Fix a preview error" : q.text}</span>
                {!readOnly && (
                  <button
                    className="icon-btn small"
                    data-testid="queued-remove"
                    aria-label={`Remove queued prompt: ${q.text}`}
                    title="Remove from the queue"
                    onClick={() => dequeue(q.id)}
                  >
                    ×
                  </button>
                )}
              </li>
            ))}
          </ul>
        )}
        {state.hitl && readOnly && (
          <div className="chat-notice muted small" role="status" data-testid="hitl-waiting">
            The agent is waiting for someone who can edit to approve or reject an action.
          </div>
        )}
        {state.hitl && !readOnly && (
          <HitlPanel
            pending={state.hitl}
            onSubmit={(decisions) => {
              const ok = session.send("hitl_response", {
                interrupt_id: state.hitl?.interrupt_id ?? "",
                response: { decisions },
              });
              if (ok) session.dispatch({ type: "local/hitl_answered" });
            }}
          />
        )}
      </div>
      {readOnly ? (
        <p className="viewer-note" role="note" data-testid="viewer-note">
          {VIEWER_NOTE}
        </p>
      ) : (
        <Composer
          enabled={canSend(state, connected)}
          typable={connected && state.init !== undefined && state.hitl === undefined}
          busy={working}
          cancelling={state.cancelling}
          placeholder={
            // Disconnected: the pill above says so (and offers Reconnect); no second message.
            !connected
              ? ""
              : !state.init
                ? "Waiting for the sandbox…"
                : state.hitl
                  ? "Approve or reject the pending action first"
                  : state.busy
                    ? "The agent is working — Enter queues your next prompt"
                    : "Describe a change… (Enter to send, Shift+Enter for a new line)"
          }
          onSend={onSend}
          onCancel={cancel}
          usage={state.lastUsage}
          projectSpend={state.projectSpend}
          models={modelChoices(state)}
          model={state.model}
          onModel={session.chooseModel}
        />
      )}
    </aside>
  );
}
