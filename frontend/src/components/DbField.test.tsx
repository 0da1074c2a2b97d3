// @vitest-environment jsdom
import { useState } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { byTestId, change, cleanup, render, submit } from "../test/dom";
import { SelectField, TextField } from "./DbField";
import { DbDraftForms } from "./DbDraftForms";

afterEach(cleanup);

/** The control a `<label>` with this text is bound to (what a screen reader announces). */
function byLabel<T extends HTMLElement>(text: string): T {
  const label = [...document.querySelectorAll("label")].find((l) => l.textContent === text);
  expect(label, `a <label> "${text}"`).toBeDefined();
  const control = document.getElementById(label?.htmlFor ?? "");
  expect(control, `the control of "${text}"`).not.toBeNull();
  return control as T;
}

function Controlled({ error, onChange }: { error?: string; onChange?: (v: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <TextField
      label="Table name"
      placeholder="new_table"
      value={value}
      error={error}
      onChange={(v) => {
        onChange?.(v);
        setValue(v);
      }}
      testId="name"
    />
  );
}

describe("TextField", () => {
  it("binds its label to the text box and reports what is typed", () => {
    const onChange = vi.fn();
    render(<Controlled onChange={onChange} />);
    const input = byLabel<HTMLInputElement>("Table name");
    expect(input).toBe(byTestId("name"));
    expect(input.labels?.[0]?.textContent).toBe("Table name");
    expect(input.className).toBe("text-input");
    expect(input.placeholder).toBe("new_table");
    change(input, "orders");
    expect(onChange).toHaveBeenCalledWith("orders");
    expect(input.value).toBe("orders");
  });

  it("hides the label from sight only, unless asked to show it", () => {
    render(<TextField label="Hidden" value="" onChange={() => undefined} />);
    render(<TextField label="Shown" value="" onChange={() => undefined} showLabel />);
    const hidden = byLabel<HTMLInputElement>("Hidden").labels?.[0];
    const shown = byLabel<HTMLInputElement>("Shown").labels?.[0];
    expect(hidden?.style.position).toBe("absolute");
    expect(hidden?.style.overflow).toBe("hidden");
    expect(hidden?.getAttribute("aria-hidden")).toBeNull();
    expect(shown?.getAttribute("style")).toBeNull();
  });

  it("without an error is neither invalid nor described", () => {
    render(<Controlled />);
    const input = byLabel("Table name");
    expect(input.hasAttribute("aria-invalid")).toBe(false);
    expect(input.hasAttribute("aria-describedby")).toBe(false);
    expect(document.querySelector('[data-testid="db-field-error"]')).toBeNull();
  });

  it("is described by its error text and marked invalid", () => {
    render(<Controlled error="must start with a letter" />);
    const input = byLabel("Table name");
    expect(input.getAttribute("aria-invalid")).toBe("true");
    const described = document.getElementById(input.getAttribute("aria-describedby") ?? "");
    expect(described?.textContent).toBe("must start with a letter");
    expect(described).toBe(byTestId("db-field-error"));
  });

  it("gives every field its own ids", () => {
    render(
      <>
        <Controlled error="first" />
        <TextField label="Other" value="" error="second" onChange={() => undefined} />
      </>,
    );
    const a = byLabel("Table name");
    const b = byLabel("Other");
    expect(a.id).not.toBe(b.id);
    expect(document.getElementById(b.getAttribute("aria-describedby") ?? "")?.textContent).toBe(
      "second",
    );
  });
});

describe("SelectField", () => {
  it("lists its options under its label and reports the choice", () => {
    const onChange = vi.fn();
    render(
      <SelectField
        label="Column type"
        options={["text", "integer", "boolean"]}
        value="integer"
        onChange={onChange}
        testId="type"
      />,
    );
    const select = byLabel<HTMLSelectElement>("Column type");
    expect(select).toBe(byTestId("type"));
    expect([...select.options].map((o) => o.value)).toEqual(["text", "integer", "boolean"]);
    expect(select.value).toBe("integer");
    change(select, "boolean");
    expect(onChange).toHaveBeenCalledWith("boolean");
  });
});

describe("the draft forms' fields", () => {
  it("are found by the names they had before, and still drive the draft", () => {
    const dispatch = vi.fn();
    render(<DbDraftForms.AddTable dispatch={dispatch} />);
    const name = byLabel<HTMLInputElement>("New table name");
    expect(name).toBe(byTestId("db-new-table"));
    change(name, " orders ");
    submit(name.form as HTMLFormElement);
    expect(dispatch).toHaveBeenCalledWith({ type: "add_table", name: "orders" });
    expect(name.value).toBe("");
  });

  it("label every control of the describe-a-change form", () => {
    const onSubmit = vi.fn();
    render(<DbDraftForms.Intent busy={false} onSubmit={onSubmit} />);
    const text = byLabel<HTMLInputElement>("Describe a schema change");
    change(text, "customers need a phone number");
    submit(text.form as HTMLFormElement);
    expect(onSubmit).toHaveBeenCalledWith("customers need a phone number");
  });
});
