/** The live preview: provisioning progress, address bar, device toggles and the iframe. */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { RuntimeErrorInfo } from "../protocol/messages";
import type { SessionState } from "../state/session";
import {
  BridgeProbe,
  normaliseRuntimeError,
  previewLoadFailed,
  projectPaths,
  RuntimeErrorDeduper,
  type ProbeStep,
} from "../runtimeErrors";
import { Provisioning } from "./Provisioning";
import { fitScale, scaledFrameStyle, useContentSize } from "./fitScale";
import {
  DesktopIcon,
  ExternalIcon,
  MobileIcon,
  ReloadIcon,
  TabletIcon,
} from "./Icons";

export type Device = "mobile" | "tablet" | "desktop";

export const DEVICE_SIZES: Record<
  Device,
  { width: string; height: string; label: string }
> = {
  mobile: { width: "390px", height: "844px", label: "Mobile (390×844)" },
  tablet: { width: "768px", height: "1024px", label: "Tablet (768×1024)" },
  desktop: { width: "100%", height: "100%", label: "Desktop (full width)" },
};

interface Props {
  hidden: boolean;
  state: SessionState;
  device: Device;
  onDevice: (d: Device) => void;
  path: string;
  onPath: (p: string) => void;
  onRuntimeError: (error: RuntimeErrorInfo) => void;
  /** "Fix it" on the error banner: start a repair turn for this error (absent: viewers). */
  onFixError?: (error: RuntimeErrorInfo) => void;
}

/** The iframe URL: `path` below the preview base URL (which may itself have a path). */
export function frameUrl(base: string, path: string): string {
  const url = new URL(base);
  url.pathname =
    url.pathname.replace(/\/$/, "") +
    (path.startsWith("/") ? path : `/${path}`);
  url.searchParams.set("amicableParentOrigin", window.location.origin);
  return url.toString();
}

/** The address "Open in new tab" opens: the app itself, without the editor's bridge key. */
export function openUrl(base: string, path: string): string {
  const url = new URL(base);
  url.pathname = url.pathname.replace(/\/$/, "") + (path.startsWith("/") ? path : `/${path}`);
  return url.toString();
}

/** The compact banner over the preview: the error, "Fix it", dismiss. */
function ErrorBanner({
  error,
  onFix,
  onDismiss,
}: {
  error: RuntimeErrorInfo;
  onFix?: () => void;
  onDismiss: () => void;
}) {
  const message = projectPaths(error.message);
  const where = error.stack ? projectPaths(error.stack).split("\n")[0] : undefined;
  return (
    <div className="preview-error" role="alert" data-testid="preview-error">
      <div className="preview-error-text">
        <strong>{error.kind === "vite_error" ? "Build error" : "Error in the app"}</strong>
        <span className="preview-error-message" data-testid="preview-error-message">
          {message.length > 300 ? `${message.slice(0, 300)}…` : message}
        </span>
        {where && <code className="small">{where.slice(0, 200)}</code>}
      </div>
      {onFix && (
        <button className="btn primary small" data-testid="preview-fix" onClick={onFix}>
          Fix it
        </button>
      )}
      <button className="icon-btn small" aria-label="Dismiss the error" data-testid="preview-error-dismiss" onClick={onDismiss}>
        ×
      </button>
    </div>
  );
}

/** A path reported by the bridge, relative to the preview base URL's path. */
export function relativePath(base: string | undefined, path: string): string {
  const prefix = base ? new URL(base).pathname.replace(/\/$/, "") : "";
  if (prefix && (path === prefix || path.startsWith(`${prefix}/`)))
    return path.slice(prefix.length) || "/";
  return path;
}

export function PreviewPane({
  hidden,
  state,
  device,
  onDevice,
  path,
  onPath,
  onRuntimeError,
  onFixError,
}: Props) {
  const [manualReloads, setManualReloads] = useState(0);
  const [draftPath, setDraftPath] = useState(path);
  const iframeRef = useRef<HTMLIFrameElement>(null);
  const addressRef = useRef<HTMLInputElement>(null);
  const deduper = useMemo(() => new RuntimeErrorDeduper(), []);
  const base = state.init?.url;
  const src = base ? frameUrl(base, path) : undefined;
  const previewOrigin = base ? new URL(base).origin : undefined;
  const frameKey = `${src}#${state.previewReloads}#${manualReloads}`;
  const probe = useMemo(() => new BridgeProbe(), []);
  const frameKeyRef = useRef(frameKey);
  const probeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(
    undefined,
  );
  // The probe's outcome for the current frame (shown as data-bridge on the iframe).
  const [bridgeResult, setBridgeResult] = useState<{
    key: string;
    state: "probing" | "ok" | "missing";
  }>();
  const bridge =
    bridgeResult?.key === frameKey ? bridgeResult.state : "probing";
  // The latest error the app reported in this frame (a reload or a new turn clears it).
  const [shownError, setShownError] = useState<{ key: string; error: RuntimeErrorInfo }>();
  const bannerError = shownError?.key === frameKey ? shownError.error : undefined;

  /** Forward a runtime error through the shared fingerprint dedupe. */
  const report = useCallback(
    (info: RuntimeErrorInfo) => {
      if (info.fingerprint && deduper.accept(info.fingerprint, Date.now()))
        onRuntimeError(info);
    },
    [deduper, onRuntimeError],
  );

  /** Carry out one step of the bridge probe: post a probe and arm its grace timer, or report. */
  const runProbe = useCallback(
    (key: string, first: ProbeStep) => {
      const run = (step: ProbeStep): void => {
        clearTimeout(probeTimer.current);
        if (step.action === "report") {
          setBridgeResult({ key, state: "missing" });
          report(step.error);
        } else if (step.action === "probe" && previewOrigin) {
          try {
            iframeRef.current?.contentWindow?.postMessage(
              { type: "amicable_runtime_probe", probe_id: step.probeId },
              previewOrigin,
            );
          } catch {
            /* the frame went away; the timer below reports or the next load restarts */
          }
          probeTimer.current = setTimeout(
            () => run(probe.timeout(step.probeId, Date.now())),
            step.waitMs,
          );
        }
      };
      run(first);
    },
    [previewOrigin, probe, report],
  );

  // A new frame (src change or reload) restarts the probe on its load; stop timers meanwhile.
  useEffect(() => {
    frameKeyRef.current = frameKey;
    return () => {
      probe.cancel();
      clearTimeout(probeTimer.current);
    };
  }, [frameKey, probe]);

  // Runtime errors and location updates from the injected bridge (only from the preview origin).
  useEffect(() => {
    if (!previewOrigin) return;
    const onMessage = (event: MessageEvent) => {
      if (
        event.origin !== previewOrigin ||
        event.source !== iframeRef.current?.contentWindow
      )
        return;
      const data: unknown = event.data;
      if (typeof data !== "object" || data === null) return;
      const rec = data as { type?: unknown; payload?: unknown; path?: unknown };
      if (rec.type === "amicable_runtime_error") {
        const info = normaliseRuntimeError(rec.payload, Date.now());
        if (info) {
          setShownError({ key: frameKeyRef.current, error: info });
          report(info);
        }
      } else if (rec.type === "amicable_runtime_probe_ack") {
        const probeId = (data as { probe_id?: unknown }).probe_id;
        if (typeof probeId === "string" && probe.ack(probeId)) {
          clearTimeout(probeTimer.current);
          setBridgeResult({ key: frameKeyRef.current, state: "ok" });
        }
      } else if (
        rec.type === "amicable_location" &&
        typeof rec.path === "string"
      ) {
        // Show the path below the preview base, and never clobber what the user is typing.
        if (document.activeElement !== addressRef.current)
          setDraftPath(relativePath(base, rec.path));
      }
    };
    window.addEventListener("message", onMessage);
    return () => window.removeEventListener("message", onMessage);
  }, [base, previewOrigin, probe, report]);

  const size = DEVICE_SIZES[device];
  const ready = src !== undefined;
  // Mobile and tablet frames shrink to fit the stage (8 px bezel each side, see styles.css).
  const stageRef = useRef<HTMLDivElement>(null);
  const stage = useContentSize(stageRef);
  const fixed = size.width.endsWith("px") ? { w: parseInt(size.width, 10), h: parseInt(size.height, 10) } : undefined;
  const scale = fixed ? fitScale(stage.width, stage.height, fixed.w + 16, fixed.h + 16) : 1;
  const frameStyle = fixed ? scaledFrameStyle(fixed.w, fixed.h, 8, scale) : { width: size.width, height: size.height };
  return (
    <section className="preview-pane" hidden={hidden} aria-label="Preview">
      <div className="preview-toolbar">
        <button
          className="icon-btn"
          title="Reload preview"
          aria-label="Reload preview"
          data-testid="preview-reload"
          disabled={!ready}
          onClick={() => setManualReloads((n) => n + 1)}
        >
          <ReloadIcon />
        </button>
        <form
          className="address-bar"
          onSubmit={(e) => {
            e.preventDefault();
            onPath(draftPath.startsWith("/") ? draftPath : `/${draftPath}`);
            setManualReloads((n) => n + 1);
          }}
        >
          <span className="address-host">
            {base ? new URL(base).host : "preview"}
          </span>
          <input
            ref={addressRef}
            data-testid="preview-path"
            aria-label="Preview path"
            value={draftPath}
            onChange={(e) => setDraftPath(e.target.value)}
            disabled={!ready}
          />
        </form>
        <a
          className={`icon-btn${ready ? "" : " disabled"}`}
          href={base ? openUrl(base, path) : undefined}
          target="_blank"
          rel="noreferrer"
          title="Open in new tab"
          aria-label="Open preview in new tab"
          data-testid="preview-open"
        >
          <ExternalIcon />
        </a>
        <div className="device-toggles" role="group" aria-label="Device">
          {(Object.keys(DEVICE_SIZES) as Device[]).map((d) => (
            <button
              key={d}
              className={device === d ? "seg active" : "seg"}
              aria-pressed={device === d}
              title={DEVICE_SIZES[d].label}
              data-testid={`device-${d}`}
              onClick={() => onDevice(d)}
            >
              {d === "mobile" ? (
                <MobileIcon />
              ) : d === "tablet" ? (
                <TabletIcon />
              ) : (
                <DesktopIcon />
              )}
              <span className="seg-label">{d}</span>
            </button>
          ))}
        </div>
      </div>
      <div className={`preview-stage device-${device}`} ref={stageRef}>
        {state.busy && state.statusLine && (
          <div
            className="updating-pill"
            data-testid="status-line"
            role="status"
          >
            <span className="spinner" /> {state.statusLine}
          </div>
        )}
        {ready && bannerError && !state.busy && (
          <ErrorBanner
            error={bannerError}
            onDismiss={() => setShownError(undefined)}
            onFix={
              onFixError &&
              (() => {
                onFixError(bannerError);
                setShownError(undefined);
              })
            }
          />
        )}
        {ready ? (
          <iframe
            key={frameKey}
            ref={iframeRef}
            data-testid="preview-frame"
            data-bridge={bridge}
            onLoad={() => {
              setBridgeResult({ key: frameKey, state: "probing" });
              runProbe(frameKey, probe.start("load", src));
            }}
            onError={() => report(previewLoadFailed(src, Date.now()))}
            title="Preview"
            src={src}
            style={frameStyle}
            data-scale={scale}
            sandbox="allow-scripts allow-same-origin allow-forms allow-popups allow-modals"
          />
        ) : (
          <Provisioning
            status={state.sandbox}
            failedAt={state.sandboxFailedAt}
          />
        )}
      </div>
    </section>
  );
}
