/** The chat column: connection state, messages, approvals and the prompt input. */
import { useEffect, useRef } from "react";
import type { ContentBlock } from "../protocol/messages";
import { canSend, modelChoices } from "../state/session";
import { VIEWER_NOTE } from "../state/roles";
import type { SessionHandle } from "../state/useSession";
import { AssistantBubble, ErrorBubble, UserBubble } from "./Bubbles";
import { Composer } from "./Composer";
import { HitlPanel } from "./HitlPanel";

interface Props {
  session: SessionHandle;
  onSend: (text: string, blocks: ContentBlock[]) => boolean;
  /** A viewer: a calm note instead of the prompt input, approvals left to editors. */
  readOnly?: boolean;
  /** Open a turn's changes (its checkpoint's diff). */
  onViewChanges?: (sha: string, title: string) => void;
  /** Chips shown in the composer (context the next message carries). */
  composerChips?: React.ReactNode;
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
      <span className="pill bad" data-testid="connection" data-state="closed">
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

export function ChatPanel({ session, onSend, readOnly = false, onViewChanges, composerChips }: Props) {
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
        {state.items.length === 0 && (
          <div className="chat-empty muted">
            {state.init ? "Workspace ready. Describe what to build or change." : "Connecting to your workspace…"}
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
                  onViewChanges={onViewChanges}
                />
              );
            case "error":
              return <ErrorBubble key={item.key} item={item} />;
            case "notice":
              return (
                <div key={item.key} className="chat-notice muted small" role="status" data-testid="chat-notice">
                  {item.text}
                </div>
              );
          }
        })}
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
            !connected
              ? "Waiting for the connection…"
              : !state.init
                ? "Waiting for the sandbox…"
                : state.hitl
                  ? "Approve or reject the pending action first"
                  : state.busy
                    ? "The agent is working…"
                    : "Describe a change… (Enter to send, Shift+Enter for a new line)"
          }
          onSend={onSend}
          onCancel={cancel}
          usage={state.lastUsage}
          projectSpend={state.projectSpend}
          models={modelChoices(state)}
          model={state.model}
          onModel={session.chooseModel}
          chips={composerChips}
        />
      )}
    </aside>
  );
}
