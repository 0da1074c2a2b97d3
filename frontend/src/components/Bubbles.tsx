/** Chat bubbles: user prompts, assistant answers with inline tool cards, readable errors. */
import { memo, useState } from "react";
import Markdown from "react-markdown";
import type { AssistantItem, ErrorItem, ToolRun, UserItem } from "../state/session";
import { formatTokens } from "../state/format";
import { parseAssistantText } from "../state/uiBlocks";
import { UiBlockView } from "./UiBlocks";

export function UserBubble({ item }: { item: UserItem }) {
  const system = item.author === "system";
  return (
    <div className={`msg user${system ? " system" : ""}`} data-testid="user-message" data-author={item.author ?? "user"}>
      <div className="bubble">
        {system && (
          <div className="system-label small" data-testid="system-prompt-label">
            Automatic fix · sent by Amicable, not by you
          </div>
        )}
        {item.images.length > 0 && (
          <div className="bubble-images">
            {item.images.map((img, idx) => (
              <img key={idx} src={`data:${img.mime_type};base64,${img.base64}`} alt={`attachment ${idx + 1}`} />
            ))}
          </div>
        )}
        {item.text && <div className="user-text">{item.text}</div>}
        {item.images.length === 0 && item.imageCount ? (
          <div className="muted small">
            {item.imageCount} image{item.imageCount === 1 ? "" : "s"} attached
          </div>
        ) : null}
      </div>
    </div>
  );
}

function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function pretty(value: unknown): string {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

/** A tool's input as readable rows (`command  npm run build`), not escaped JSON. */
function KeyValues({ value }: { value: unknown }) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return <pre>{pretty(value)}</pre>;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return <pre className="muted">(no input)</pre>;
  return (
    <dl className="tool-kv" data-testid="tool-input">
      {entries.map(([key, v]) => (
        <div key={key} className="tool-kv-row">
          <dt>{key.replace(/_/g, " ")}</dt>
          <dd>
            <pre>{typeof v === "string" ? v : pretty(v)}</pre>
          </dd>
        </div>
      ))}
    </dl>
  );
}

const STATUS_LABELS: Record<ToolRun["status"], string> = {
  running: "Running",
  ok: "Done",
  error: "Failed",
  stopped: "Stopped",
};

function toolSummary(run: ToolRun): string {
  const input = run.input;
  if (typeof input === "object" && input !== null) {
    const rec = input as Record<string, unknown>;
    for (const key of ["file_path", "path", "command", "cmd", "pattern", "query"]) {
      const v = rec[key];
      if (typeof v === "string") return v.length > 80 ? `${v.slice(0, 80)}…` : v;
    }
  }
  return "";
}

const TOOL_ICONS: Record<string, string> = {
  write_file: "✎",
  edit_file: "✎",
  read_file: "◉",
  execute: "›_",
  run: "›_",
  qa: "✓",
  qa_check: "✓",
};

function ToolCard({ run }: { run: ToolRun }) {
  const [open, setOpen] = useState(false);
  const summary = toolSummary(run);
  return (
    <div className={`tool-card ${run.status}`} data-testid="tool-card" data-status={run.status} data-tool={run.name}>
      <button className="tool-head" onClick={() => setOpen((o) => !o)} aria-expanded={open}>
        <span className="tool-icon">{TOOL_ICONS[run.name] ?? "⚙"}</span>
        <span className="tool-name">{run.name}</span>
        <span className="tool-summary">{summary}</span>
        <span className={`badge ${run.status}`}>
          {run.status === "running" ? <span className="spinner" aria-label="Running" /> : STATUS_LABELS[run.status]}
        </span>
        <span className="tool-duration">{formatDuration(run.durationMs)}</span>
        <span className="chevron">{open ? "▾" : "▸"}</span>
      </button>
      {run.explanation && <div className="tool-explain">{run.explanation}</div>}
      {open && (
        <div className="tool-body" data-testid="tool-body">
          {run.input !== undefined && (
            <>
              <div className="tool-label">Input</div>
              <KeyValues value={run.input} />
            </>
          )}
          {run.output !== undefined && (
            <>
              <div className="tool-label">Output</div>
              <pre>{pretty(run.output)}</pre>
            </>
          )}
          {run.error && (
            <>
              <div className="tool-label">Error</div>
              <pre className="error-text">{run.error}</pre>
            </>
          )}
        </div>
      )}
    </div>
  );
}

function MarkdownText({ text }: { text: string }) {
  if (text.trim() === "") return null;
  return (
    <div className="markdown">
      <Markdown>{text}</Markdown>
    </div>
  );
}

function AssistantBubbleInner({ item, streaming }: { item: AssistantItem; streaming: boolean }) {
  const { markdown, blocks } = parseAssistantText(item.text);
  const segments: React.ReactNode[] = [];
  let cursor = 0;
  item.timeline.forEach((entry) => {
    const run = item.runs[entry.runId];
    const anchor = Math.min(entry.anchor, markdown.length);
    if (anchor > cursor) {
      segments.push(<MarkdownText key={`t-${cursor}`} text={markdown.slice(cursor, anchor)} />);
      cursor = anchor;
    }
    if (run) segments.push(<ToolCard key={`r-${entry.runId}`} run={run} />);
  });
  if (cursor < markdown.length) segments.push(<MarkdownText key={`t-${cursor}`} text={markdown.slice(cursor)} />);
  const empty = markdown.trim() === "" && item.timeline.length === 0 && blocks.length === 0;
  return (
    <div className="msg assistant" data-testid="assistant-message" data-final={item.final ? "true" : "false"}>
      <div className="bubble">
        {blocks.map((block, idx) => (
          <UiBlockView key={idx} block={block} />
        ))}
        {segments}
        {empty && streaming && <div className="thinking muted">Thinking…</div>}
        {streaming && (
          <span className="typing" role="img" aria-label="The agent is writing">
            <i />
            <i />
            <i />
          </span>
        )}
        {item.reasoning && (
          <details className="reasoning" data-testid="reasoning" data-by={item.reasoningBy ?? "platform"}>
            <summary>{item.reasoningBy === "model" ? "The model's thinking" : "What Amicable saw this turn do"}</summary>
            <p>{item.reasoning}</p>
            {item.reasoningBy !== "model" && (
              <p className="muted small">Written by Amicable from the turn's tool calls, not by the model.</p>
            )}
          </details>
        )}
        {item.usage && (item.usage.input_tokens > 0 || item.usage.output_tokens > 0) && (
          <div className="usage-line muted small" data-testid="usage">
            {formatTokens(item.usage.input_tokens, item.usage.output_tokens)}
            {item.usage.cache_read_input_tokens ? ` · ${item.usage.cache_read_input_tokens.toLocaleString("en-US")} cached` : ""}
            {` · $${(item.usage.cost_usd ?? 0).toFixed(4)}`}
            {item.usage.model ? ` · ${item.usage.model}` : ""}
          </div>
        )}
      </div>
    </div>
  );
}

export const AssistantBubble = memo(AssistantBubbleInner);

export function ErrorBubble({ item, onRetry }: { item: ErrorItem; onRetry?: (text: string) => void }) {
  return (
    <div className="msg error" data-testid="error-message" data-code={item.code} role="alert">
      <div className="bubble">
        <div className="error-title">⚠ {item.explanation.title}</div>
        <div className="error-action">{item.explanation.action}</div>
        {item.retry && onRetry && (
          <button
            className="btn small"
            data-testid="error-retry"
            onClick={() => item.retry && onRetry(item.retry.text)}
            title="Send the same prompt again"
          >
            Retry
          </button>
        )}
        {item.qaResults && item.qaResults.length > 0 && (
          <ul className="qa-results" data-testid="qa-results">
            {item.qaResults.map((r, idx) => (
              <li key={idx} className={r.exit_code === 0 ? "ok" : "bad"}>
                <code>{r.command}</code> — exit {r.exit_code}
                {r.truncated ? " (output truncated)" : ""}
              </li>
            ))}
          </ul>
        )}
        {item.detail && item.detail !== item.explanation.action && (
          <details className="error-detail">
            <summary>Details</summary>
            <pre>{item.detail}</pre>
          </details>
        )}
      </div>
    </div>
  );
}
