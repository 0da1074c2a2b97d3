/**
 * The prompt input: Enter sends, Shift+Enter adds a line, image attachments, Stop; the
 * project's model picker and its running cost.
 */
import { useRef, useState } from "react";
import type { ContentBlock, ImageBlock, ModelChoice, SpendSummary, Usage } from "../protocol/messages";
import { ClipIcon, StopIcon } from "./Icons";
import { formatMoney, formatTokens } from "../state/format";

const MAX_IMAGES = 4;
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;

interface Props {
  /** Sending is possible now. */
  enabled: boolean;
  /** Typing is possible (also while a turn runs, to prepare the next prompt). */
  typable: boolean;
  busy: boolean;
  cancelling: boolean;
  placeholder: string;
  onSend: (text: string, blocks: ContentBlock[]) => boolean;
  onCancel: () => void;
  usage: Usage | undefined;
  /** The project's tokens and cost so far. */
  projectSpend?: SpendSummary;
  /** The models on offer (the picker shows when there is a choice) and the project's. */
  models?: ModelChoice[];
  model?: string;
  onModel?: (id: string) => void;
}

const money = formatMoney;

function priceHint(m: ModelChoice): string {
  const p = (v: number | undefined) => (v ?? 0).toFixed(2).replace(/\.00$/, "");
  if (!m.price_input_per_mtok && !m.price_output_per_mtok) return "";
  return ` · $${p(m.price_input_per_mtok)}/$${p(m.price_output_per_mtok)} per Mtok`;
}

/** "Project: $0.0421 · 12,345 in · 678 out" (the running total); the last turn in the tooltip. */
function SpendLine({ usage, spend }: { usage: Usage | undefined; spend: SpendSummary | undefined }) {
  const last = usage ? `Last turn: ${formatTokens(usage.input_tokens, usage.output_tokens)} · ${money(usage.cost_usd)}` : undefined;
  if (spend) {
    return (
      <span className="usage muted small" data-testid="usage-total" title={last}>
        Project: {money(spend.cost_usd)} · {formatTokens(spend.input_tokens, spend.output_tokens)}
      </span>
    );
  }
  return (
    <span className="usage muted small" data-testid="usage-total">
      {usage ? `${formatTokens(usage.input_tokens, usage.output_tokens)} · ${money(usage.cost_usd)}` : ""}
    </span>
  );
}

function readImage(file: File): Promise<ImageBlock> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(reader.error ?? new Error("read failed"));
    reader.onload = () => {
      const result = String(reader.result);
      resolve({ type: "image", mime_type: file.type, base64: result.slice(result.indexOf(",") + 1) });
    };
    reader.readAsDataURL(file);
  });
}

export function Composer(props: Props) {
  const { enabled, typable, busy, cancelling, placeholder, onSend, onCancel, usage } = props;
  const { projectSpend, models = [], model, onModel } = props;
  const [text, setText] = useState("");
  const [images, setImages] = useState<ImageBlock[]>([]);
  const [attachError, setAttachError] = useState<string | undefined>();
  const fileRef = useRef<HTMLInputElement>(null);

  const submit = () => {
    const trimmed = text.trim();
    if (!enabled || (trimmed === "" && images.length === 0)) return;
    const blocks: ContentBlock[] = images.length > 0 ? [...(trimmed ? [{ type: "text" as const, text: trimmed }] : []), ...images] : [];
    if (onSend(trimmed, blocks)) {
      setText("");
      setImages([]);
    }
  };

  const attach = async (files: FileList | null) => {
    if (!files) return;
    setAttachError(undefined);
    const picked = Array.from(files).filter((f) => f.type.startsWith("image/"));
    const tooBig = picked.find((f) => f.size > MAX_IMAGE_BYTES);
    if (tooBig) {
      setAttachError(`${tooBig.name} is larger than 5 MB`);
      return;
    }
    const room = MAX_IMAGES - images.length;
    if (picked.length > room) setAttachError(`At most ${MAX_IMAGES} images per message`);
    const read = await Promise.all(picked.slice(0, Math.max(0, room)).map(readImage));
    setImages((prev) => [...prev, ...read]);
  };

  return (
    <div className="composer">
      {images.length > 0 && (
        <div className="attachments" data-testid="attachments">
          {images.map((img, idx) => (
            <div className="thumb" key={idx}>
              <img src={`data:${img.mime_type};base64,${img.base64}`} alt={`attachment ${idx + 1}`} />
              <button
                className="thumb-remove"
                aria-label="Remove attachment"
                onClick={() => setImages((prev) => prev.filter((_, i) => i !== idx))}
              >
                ×
              </button>
            </div>
          ))}
        </div>
      )}
      {attachError && <p className="form-error small">{attachError}</p>}
      <div className={`composer-box${enabled ? "" : " disabled"}`}>
        <textarea
          data-testid="chat-input"
          aria-label="Message"
          value={text}
          rows={3}
          disabled={!typable}
          placeholder={placeholder}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Escape" && busy && !cancelling) {
              e.preventDefault();
              onCancel();
            } else if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
              e.preventDefault();
              submit();
            }
          }}
          onPaste={(e) => {
            if (e.clipboardData.files.length > 0) {
              e.preventDefault();
              void attach(e.clipboardData.files);
            }
          }}
        />
        <div className="composer-actions">
          <input
            ref={fileRef}
            type="file"
            accept="image/*"
            multiple
            hidden
            data-testid="chat-attach-input"
            onChange={(e) => {
              void attach(e.target.files);
              e.target.value = "";
            }}
          />
          <button
            className="icon-btn"
            title="Attach images"
            aria-label="Attach images"
            data-testid="chat-attach"
            disabled={!enabled}
            onClick={() => fileRef.current?.click()}
          >
            <ClipIcon />
          </button>
          {models.length > 1 && onModel && (
            <select
              className="model-picker small"
              data-testid="model-picker"
              aria-label="Model"
              title="The model this project's next prompts run on"
              value={model ?? models[0]?.id}
              disabled={busy || !typable}
              onChange={(e) => onModel(e.target.value)}
            >
              {models.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.label + priceHint(m)}
                </option>
              ))}
            </select>
          )}
          <SpendLine usage={usage} spend={projectSpend} />
          {busy && enabled && (text.trim() !== "" || images.length > 0) && (
            <button className="btn small" data-testid="chat-queue" onClick={submit} title="Send it after the running turn">
              Queue ↵
            </button>
          )}
          {busy ? (
            <button
              className="btn danger small"
              data-testid="chat-cancel"
              onClick={onCancel}
              disabled={cancelling}
              title="Stop the agent (Esc)"
            >
              {cancelling ? "Stopping…" : (
                <>
                  <StopIcon /> Stop
                </>
              )}
            </button>
          ) : (
            <button className="btn primary small" data-testid="chat-send" disabled={!enabled || (text.trim() === "" && images.length === 0)} onClick={submit}>
              Send ↵
            </button>
          )}
        </div>
      </div>
    </div>
  );
}
