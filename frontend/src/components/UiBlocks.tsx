/** Rendering of generative-UI blocks (`steps`, `cards`, raw JSON fallback). */
import type { UiBlock } from "../state/uiBlocks";

const STEP_ICON = { done: "✓", active: "●", todo: "○", error: "✕" } as const;

export function UiBlockView({ block }: { block: UiBlock }) {
  switch (block.kind) {
    case "steps":
      return (
        <div className="ui-block ui-steps" data-testid="ui-steps">
          {block.title && <div className="ui-title">{block.title}</div>}
          <ol>
            {block.steps.map((step, idx) => (
              <li key={idx} className={`step ${step.status}`}>
                <span className="step-icon">{STEP_ICON[step.status]}</span>
                <span>
                  {step.title}
                  {step.detail && <span className="muted small"> — {step.detail}</span>}
                </span>
              </li>
            ))}
          </ol>
        </div>
      );
    case "cards":
      return (
        <div className="ui-block ui-cards" data-testid="ui-cards">
          {block.title && <div className="ui-title">{block.title}</div>}
          <div className="ui-card-grid">
            {block.cards.map((card, idx) => (
              <div key={idx} className="ui-card">
                <div className="ui-card-title">
                  {card.title}
                  {card.badge && <span className="badge">{card.badge}</span>}
                </div>
                {card.description && <div className="muted small">{card.description}</div>}
              </div>
            ))}
          </div>
        </div>
      );
    case "raw":
      return <pre className="ui-block ui-raw">{block.json}</pre>;
  }
}
