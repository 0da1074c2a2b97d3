/** One labelled control of the database pane's one-row forms: a text box or a list, with a
 * `<label>` bound to it (`htmlFor`/`id`) and, when there is one, an error message the
 * control is described by (`aria-describedby`, `aria-invalid`).
 *
 * The label is visually hidden by default: the forms are compact rows whose placeholders and
 * neighbours say what a control is for; screen readers and `getByLabel` still find it. The
 * parts render as siblings (no wrapper), so a flex row lays the control out as before. */
import { useId, type CSSProperties } from "react";

/** Hidden from sight, not from assistive technology (the usual "visually hidden" recipe). */
const HIDDEN: CSSProperties = {
  position: "absolute",
  width: 1,
  height: 1,
  padding: 0,
  margin: -1,
  overflow: "hidden",
  clip: "rect(0 0 0 0)",
  whiteSpace: "nowrap",
  border: 0,
};

interface FieldProps {
  /** The control's accessible name (the label's text). */
  label: string;
  value: string;
  onChange: (value: string) => void;
  /** Shown after the control and announced with it; the control is marked invalid. */
  error?: string;
  /** Show the label instead of hiding it. */
  showLabel?: boolean;
  testId?: string;
}

function useField({ label, error, showLabel }: FieldProps) {
  const id = useId();
  const errorId = `${id}-error`;
  return {
    label: (
      <label htmlFor={id} style={showLabel ? undefined : HIDDEN}>
        {label}
      </label>
    ),
    control: {
      id,
      className: "text-input",
      "aria-invalid": error ? true : undefined,
      "aria-describedby": error ? errorId : undefined,
    },
    error: error ? (
      <span id={errorId} className="form-error small" data-testid="db-field-error">
        {error}
      </span>
    ) : null,
  };
}

/** A labelled text box. */
export function TextField(props: FieldProps & { placeholder?: string }) {
  const { label, control, error } = useField(props);
  return (
    <>
      {label}
      <input
        {...control}
        placeholder={props.placeholder}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        data-testid={props.testId}
      />
      {error}
    </>
  );
}

/** A labelled list of `options` (each option's text is its value). */
export function SelectField(props: FieldProps & { options: readonly string[] }) {
  const { label, control, error } = useField(props);
  return (
    <>
      {label}
      <select
        {...control}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        data-testid={props.testId}
      >
        {props.options.map((option) => (
          <option key={option}>{option}</option>
        ))}
      </select>
      {error}
    </>
  );
}
