import { describe, expect, it } from "vitest";
import { parseAssistantText, parseUiBlock } from "./uiBlocks";

describe("ui blocks", () => {
  it("cuts steps blocks out of the Markdown", () => {
    const text = 'Plan:\n```ui\n{"type":"steps","title":"Plan","steps":[{"title":"Scaffold","status":"done"},"Style"]}\n```\nDone.';
    const parsed = parseAssistantText(text);
    expect(parsed.markdown).toBe("Plan:\nDone.");
    expect(parsed.blocks).toEqual([
      { kind: "steps", title: "Plan", steps: [{ title: "Scaffold", status: "done" }, { title: "Style", status: "todo" }] },
    ]);
  });

  it("parses cards and keeps several blocks in order", () => {
    const text = '```ui\n{"type":"cards","cards":[{"title":"A","description":"first","badge":"new"}]}\n```\n```ui\n{"steps":["x"]}\n```\n';
    const { blocks, markdown } = parseAssistantText(text);
    expect(blocks.map((b) => b.kind)).toEqual(["cards", "steps"]);
    expect(blocks[0]).toEqual({ kind: "cards", cards: [{ title: "A", description: "first", badge: "new" }] });
    expect(markdown.trim()).toBe("");
  });

  it("hides a block that is still streaming", () => {
    const { markdown, blocks } = parseAssistantText('Working\n```ui\n{"type":"steps","st');
    expect(markdown).toBe("Working\n");
    expect(blocks).toEqual([]);
  });

  it("falls back to raw JSON for unknown or invalid bodies", () => {
    expect(parseUiBlock('{"type":"chart","data":[1]}')).toEqual({ kind: "raw", json: '{\n  "type": "chart",\n  "data": [\n    1\n  ]\n}' });
    expect(parseUiBlock("{oops")).toEqual({ kind: "raw", json: "{oops" });
    expect(parseUiBlock('{"type":"steps","steps":[]}').kind).toBe("raw");
  });

  it("leaves ordinary code fences alone", () => {
    const text = "```tsx\nconst a = 1;\n```";
    expect(parseAssistantText(text)).toEqual({ markdown: text, blocks: [] });
  });
});
