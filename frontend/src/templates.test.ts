import { describe, expect, it } from "vitest";
import { DEFAULT_TEMPLATE, templateList, templateTitle } from "./templates";

describe("templateList", () => {
  it("offers what the agent lists, with its default", () => {
    const list = templateList({
      default: "hono",
      templates: [
        { id: "vite", name: "React + Vite", description: "SPA" },
        { id: "hono", name: "Hono API", description: "API" },
      ],
    });
    expect(list.templates.map((t) => t.id)).toEqual(["vite", "hono"]);
    expect(list.templates[1]).toEqual({ id: "hono", title: "Hono API", description: "API" });
    expect(list.defaultId).toBe("hono");
  });

  it("falls back to the default template alone on a malformed answer", () => {
    for (const bad of [undefined, null, "x", { templates: "no" }, { templates: [{ id: 3 }] }]) {
      const list = templateList(bad);
      expect(list.templates.map((t) => t.id)).toEqual([DEFAULT_TEMPLATE]);
      expect(list.defaultId).toBe(DEFAULT_TEMPLATE);
    }
  });

  it("never defaults to a template it does not offer", () => {
    const list = templateList({ default: "cobol", templates: [{ id: "fastapi", name: "FastAPI" }] });
    expect(list.defaultId).toBe("fastapi");
  });

  it("names projects of templates no longer offered", () => {
    expect(templateTitle("remix", [])).toBe("React Router (Remix)");
    expect(templateTitle("unknown-stack", [])).toBe("unknown-stack");
  });
});
