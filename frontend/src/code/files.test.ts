import { describe, expect, it } from "vitest";
import {
  closeTab,
  closeUnder,
  compactDiff,
  fileIcon,
  isDirty,
  isHiddenEntry,
  lineDiff,
  mineCopyPath,
  NO_TABS,
  openTab,
  renameTabs,
  updateTab,
  type OpenFile,
} from "./files";

function file(path: string, text = "x"): OpenFile {
  return { path, saved: text, draft: text, sha256: "s", binary: false, version: 1, agentSeen: 0, restoreSeen: 0 };
}

describe("the tree filter", () => {
  it("hides dependencies and build output folders, not files of the same name", () => {
    for (const dir of ["node_modules", "dist", "build", ".next", "__pycache__", ".svelte-kit", ".git"]) {
      expect(isHiddenEntry(dir, true)).toBe(true);
    }
    expect(isHiddenEntry("src", true)).toBe(false);
    expect(isHiddenEntry("build", false)).toBe(false); // a file called build (a script) stays
    expect(isHiddenEntry("distribution", true)).toBe(false);
  });
});

describe("keep mine as a copy", () => {
  it("puts .mine before the extension, and avoids names that exist", () => {
    expect(mineCopyPath("/src/App.tsx")).toBe("/src/App.mine.tsx");
    expect(mineCopyPath("/Makefile")).toBe("/Makefile.mine");
    expect(mineCopyPath("/.env")).toBe("/.env.mine");
    expect(mineCopyPath("/a.b/c.test.ts")).toBe("/a.b/c.test.mine.ts");
    const taken = new Set(["/src/App.mine.tsx", "/src/App.mine-2.tsx"]);
    expect(mineCopyPath("/src/App.tsx", taken)).toBe("/src/App.mine-3.tsx");
  });
});

describe("file icons", () => {
  it("tell file types apart", () => {
    expect(fileIcon("/src/App.tsx")).toEqual({ label: "TSX", kind: "ts" });
    expect(fileIcon("/package.json").label).toBe("npm");
    expect(fileIcon("/tsconfig.json").kind).toBe("json");
    expect(fileIcon("/styles.CSS").kind).toBe("css");
    expect(fileIcon("/README").kind).toBe("other");
  });
});

describe("open-file tabs", () => {
  it("opens, re-opens in place, and closes to the right neighbour", () => {
    let tabs = openTab(NO_TABS, file("/a"));
    tabs = openTab(tabs, file("/b"));
    tabs = openTab(tabs, file("/c"));
    expect(tabs.active).toBe("/c");
    tabs = openTab(tabs, { ...file("/a"), version: 2 });
    expect(tabs.files.map((f) => f.path)).toEqual(["/a", "/b", "/c"]);
    expect(tabs.active).toBe("/a");
    expect(tabs.files[0]?.version).toBe(2);
    tabs = closeTab(tabs, "/a");
    expect(tabs.active).toBe("/b");
    tabs = closeTab(tabs, "/c"); // not active: the active tab stays
    expect(tabs).toEqual({ files: [tabs.files[0]], active: "/b" });
    tabs = closeTab(tabs, "/b");
    expect(tabs).toEqual({ files: [], active: undefined });
  });

  it("the last tab closed activates its left neighbour; deleting a folder closes its files", () => {
    let tabs = openTab(openTab(openTab(NO_TABS, file("/src/a")), file("/src/b")), file("/top"));
    expect(closeTab(tabs, "/top").active).toBe("/src/b");
    tabs = closeUnder(tabs, "/src");
    expect(tabs.files.map((f) => f.path)).toEqual(["/top"]);
    expect(tabs.active).toBe("/top");
  });

  it("a rename moves tabs at and below the path; drafts make a tab dirty", () => {
    let tabs = openTab(openTab(NO_TABS, file("/src/a.ts")), file("/srcx/b.ts"));
    tabs = renameTabs({ ...tabs, active: "/src/a.ts" }, "/src", "/lib");
    expect(tabs.files.map((f) => f.path)).toEqual(["/lib/a.ts", "/srcx/b.ts"]);
    expect(tabs.active).toBe("/lib/a.ts");
    tabs = updateTab(tabs, "/lib/a.ts", (f) => ({ ...f, draft: "changed" }));
    expect(tabs.files.map(isDirty)).toEqual([true, false]);
  });
});

describe("the conflict diff", () => {
  it("marks lines only in theirs (del) and only in mine (add)", () => {
    expect(lineDiff("a\nb\nc", "a\nB\nc\nd")).toEqual([
      { kind: "same", text: "a" },
      { kind: "del", text: "b" },
      { kind: "add", text: "B" },
      { kind: "same", text: "c" },
      { kind: "add", text: "d" },
    ]);
    expect(lineDiff("same", "same")).toEqual([{ kind: "same", text: "same" }]);
  });

  it("falls back to whole-file replacement beyond the size cap", () => {
    const out = lineDiff("a\nb", "a\nc", 3);
    expect(out).toEqual([
      { kind: "del", text: "a" },
      { kind: "del", text: "b" },
      { kind: "add", text: "a" },
      { kind: "add", text: "c" },
    ]);
  });

  it("compacts long unchanged runs into gaps", () => {
    const theirs = Array.from({ length: 20 }, (_, i) => `l${i}`).join("\n");
    const mine = theirs.replace("l10", "L10");
    const compact = compactDiff(lineDiff(theirs, mine), 1);
    expect(compact).toEqual([
      "gap",
      { kind: "same", text: "l9" },
      { kind: "del", text: "l10" },
      { kind: "add", text: "L10" },
      { kind: "same", text: "l11" },
      "gap",
    ]);
  });
});
