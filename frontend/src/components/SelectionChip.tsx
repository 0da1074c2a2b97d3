/** The element picked in the preview, shown in the composer until it is sent or removed. */
import type { SelectedElement } from "../protocol/types.gen";
import { selectionLabel } from "../selection";

interface Props {
  element: SelectedElement;
  onRemove: () => void;
}

export function SelectionChip({ element, onRemove }: Props) {
  const where = element.source ?? element.selector;
  return (
    <span
      className="select-chip"
      data-testid="selection-chip"
      data-tag={element.tag}
      title={`Your next message is about this element (${where})`}
    >
      <code>{selectionLabel(element)}</code>
      <span className="chip-text">{where}</span>
      <button aria-label="Remove the selected element" data-testid="selection-chip-remove" onClick={onRemove}>
        ×
      </button>
    </span>
  );
}
