/** Sandbox provisioning progress (`sandbox_status` stages) shown until the preview is ready. */
import type { SandboxStage, SandboxStatus } from "../protocol/messages";

const STAGES: { stage: SandboxStage; label: string }[] = [
  { stage: "queued", label: "Queued" },
  { stage: "creating", label: "Creating sandbox" },
  { stage: "starting_runtime", label: "Starting runtime" },
  { stage: "starting_preview", label: "Starting dev server" },
  { stage: "restoring", label: "Restoring your project" },
  { stage: "ready", label: "Ready" },
];

interface Props {
  status: SandboxStatus | undefined;
  failedAt?: SandboxStage;
}

export function Provisioning({ status, failedAt }: Props) {
  const failed = status?.stage === "failed";
  const shown = failed ? (failedAt ?? "queued") : status?.stage;
  // Only a sandbox that was re-created (reaped, restarted) restores its project: the step is
  // listed while it runs (or where it failed), not on every start.
  const stages = STAGES.filter((s) => s.stage !== "restoring" || shown === "restoring");
  const current = shown ? stages.findIndex((s) => s.stage === shown) : -1;
  const percent = failed ? 100 : Math.round(((current + 1) / stages.length) * 100);
  return (
    <div className="provisioning card" data-testid="provisioning" data-stage={status?.stage ?? "connecting"}>
      <h3>{failed ? "The sandbox could not start" : "Preparing your workspace"}</h3>
      <div className={`progress ${failed ? "failed" : ""}`} role="progressbar" aria-valuenow={percent} aria-valuemin={0} aria-valuemax={100}>
        <div className="progress-fill" style={{ width: `${Math.max(percent, 4)}%` }} />
      </div>
      <ol className="stage-list">
        {stages.map((s, idx) => {
          const state = failed && idx === current ? "error" : idx < current ? "done" : idx === current ? "active" : "todo";
          return (
            <li key={s.stage} className={`stage ${state}`} data-testid={`stage-${s.stage}`}>
              <span className="stage-dot" />
              {s.label}
            </li>
          );
        })}
      </ol>
      <p className="muted small">
        {status?.message || (status ? "" : "Connecting to the agent…")}
        {status?.elapsed_ms != null ? ` · ${(status.elapsed_ms / 1000).toFixed(1)} s` : ""}
      </p>
    </div>
  );
}
