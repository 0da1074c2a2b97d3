/** Chat bubbles: user prompts, assistant answers with inline tool cards, readable errors. */
import { memo, useState } from "react";
import Markdown from "react-markdown";
import type { AssistantItem, ErrorItem, ToolRun, UserItem } from "../state/session";
import { parseAssistantText } from "../state/uiBlocks";
import { UiBlockView } from "./UiBlocks";

export function UserBubble({ item }: { item: UserItem }) {
  return (
    <div className="msg user" data-testid="user-message">
      <div className="bubble">
        {item.images.length > 0 && (
          <div className="bubble-images">
            {item.images.map((img, idx) => (
              <img key={idx} src={`data:${img.mime_type};base64,${img.base64}`} alt={`attachment ${idx + 1}`} />
            ))}
          </div>
        )}
        {item.text && <div className="user-text">{item.text}</div>}
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
          {run.status === "running" ? <span className="spinner" /> : run.status === "ok" ? "OK" : "Error"}
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
              <pre>{pretty(run.input)}</pre>
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

interface AssistantProps {
  item: AssistantItem;
  streaming: boolean;
  /** Open the changes of this turn's checkpoint (shown once the checkpoint is saved). */
  onViewChanges?: (sha: string, title: string) => void;
}

function AssistantBubbleInner({ item, streaming, onViewChanges }: AssistantProps) {
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
          <details className="reasoning" data-testid="reasoning">
            <summary>Reasoning summary</summary>
            <p>{item.reasoning}</p>
          </details>
        )}
        {item.checkpoint && onViewChanges && (
          <div className="turn-actions">
            <button
              className="btn small ghost"
              data-testid="view-changes"
              data-sha={item.checkpoint.sha}
              onClick={() => item.checkpoint && onViewChanges(item.checkpoint.sha, item.checkpoint.title)}
            >
              View changes ({item.checkpoint.filesChanged} file{item.checkpoint.filesChanged === 1 ? "" : "s"})
            </button>
          </div>
        )}
        {item.usage && (
          <div className="usage-line muted small" data-testid="usage">
            {item.usage.input_tokens.toLocaleString()} in · {item.usage.output_tokens.toLocaleString()} out
            {item.usage.cache_read_input_tokens ? ` · ${item.usage.cache_read_input_tokens.toLocaleString()} cached` : ""}
            {` · $${(item.usage.cost_usd ?? 0).toFixed(4)}`}
            {item.usage.model ? ` · ${item.usage.model}` : ""}
          </div>
        )}
      </div>
    </div>
  );
}

export const AssistantBubble = memo(AssistantBubbleInner);

export function ErrorBubble({ item }: { item: ErrorItem }) {
  return (
    <div className="msg error" data-testid="error-message" data-code={item.code} role="alert">
      <div className="bubble">
        <div className="error-title">⚠ {item.explanation.title}</div>
        <div className="error-action">{item.explanation.action}</div>
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
