/** Pure helpers of the Code pane: open-file tabs, the tree filter, file icons, conflict copies and diffs. */

/** Dependencies and build output: hidden in the file tree unless "Show all files" is on. */
export const HIDDEN_DIRS: ReadonlySet<string> = new Set([
  "node_modules",
  ".git",
  "dist",
  "build",
  ".next",
  ".svelte-kit",
  "__pycache__",
  ".turbo",
  ".cache",
]);

export function isHiddenEntry(name: string, isDir: boolean): boolean {
  return isDir && HIDDEN_DIRS.has(name);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * Where "keep mine as a copy" saves your text: `App.tsx` → `App.mine.tsx`, `Makefile` →
 * `Makefile.mine`, `.env` → `.env.mine`; `taken` holds paths that exist (then `.mine-2`, …).
 */
export function mineCopyPath(path: string, taken: ReadonlySet<string> = new Set()): string {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  for (let n = 1; ; n++) {
    const candidate = `${dir}${stem}.mine${n === 1 ? "" : `-${n}`}${ext}`;
    if (!taken.has(candidate)) return candidate;
  }
}

export interface FileIcon {
  /** A short label drawn in the icon (e.g. "TS"). */
  label: string;
  /** A CSS modifier for its colour. */
  kind: string;
}

const ICONS: Record<string, FileIcon> = {
  ts: { label: "TS", kind: "ts" },
  tsx: { label: "TSX", kind: "ts" },
  js: { label: "JS", kind: "js" },
  jsx: { label: "JSX", kind: "js" },
  mjs: { label: "JS", kind: "js" },
  cjs: { label: "JS", kind: "js" },
  json: { label: "{}", kind: "json" },
  css: { label: "#", kind: "css" },
  scss: { label: "#", kind: "css" },
  html: { label: "<>", kind: "html" },
  svelte: { label: "S", kind: "html" },
  vue: { label: "V", kind: "html" },
  md: { label: "M↓", kind: "md" },
  py: { label: "PY", kind: "py" },
  svg: { label: "SVG", kind: "img" },
  png: { label: "IMG", kind: "img" },
  jpg: { label: "IMG", kind: "img" },
  jpeg: { label: "IMG", kind: "img" },
  gif: { label: "IMG", kind: "img" },
  webp: { label: "IMG", kind: "img" },
  ico: { label: "IMG", kind: "img" },
  lock: { label: "🔒", kind: "other" },
  sql: { label: "SQL", kind: "json" },
  yaml: { label: "Y", kind: "json" },
  yml: { label: "Y", kind: "json" },
  sh: { label: "$", kind: "other" },
};

export function fileIcon(path: string): FileIcon {
  const name = baseName(path).toLowerCase();
  if (name === "package.json") return { label: "npm", kind: "js" };
  if (name.startsWith(".env")) return { label: "env", kind: "other" };
  const dot = name.lastIndexOf(".");
  return (dot > 0 && ICONS[name.slice(dot + 1)]) || { label: "·", kind: "other" };
}

/** One open file (a tab). `saved` is the text as loaded / last saved, `draft` the editor's text. */
export interface OpenFile {
  path: string;
  saved: string;
  draft: string;
  sha256: string;
  binary: boolean;
  /** Bumped when the editor document must be replaced (reload). */
  version: number;
  /** The agent's / a restore's write counters for this path when it was loaded. */
  agentSeen: number;
  restoreSeen: number;
}

export interface Tabs {
  files: OpenFile[];
  active: string | undefined;
}

export const NO_TABS: Tabs = { files: [], active: undefined };

export function isDirty(file: OpenFile): boolean {
  return !file.binary && file.draft !== file.saved;
}

/** Open (or refresh) `file` as the active tab; an existing tab keeps its place. */
export function openTab(tabs: Tabs, file: OpenFile): Tabs {
  const idx = tabs.files.findIndex((f) => f.path === file.path);
  const files = idx < 0 ? [...tabs.files, file] : tabs.files.map((f, i) => (i === idx ? file : f));
  return { files, active: file.path };
}

/** Close `path`; if it was active, its right neighbour (else the left one) becomes active. */
export function closeTab(tabs: Tabs, path: string): Tabs {
  const idx = tabs.files.findIndex((f) => f.path === path);
  if (idx < 0) return tabs;
  const files = tabs.files.filter((f) => f.path !== path);
  if (tabs.active !== path) return { files, active: tabs.active };
  const next = files[Math.min(idx, files.length - 1)];
  return { files, active: next?.path };
}

/** Close every tab at or below `path` (a deleted file or folder). */
export function closeUnder(tabs: Tabs, path: string): Tabs {
  let out = tabs;
  for (const f of tabs.files) if (f.path === path || f.path.startsWith(`${path}/`)) out = closeTab(out, f.path);
  return out;
}

export function updateTab(tabs: Tabs, path: string, change: (f: OpenFile) => OpenFile): Tabs {
  return { ...tabs, files: tabs.files.map((f) => (f.path === path ? change(f) : f)) };
}

/** A file or folder was renamed: tabs at or below it follow. */
export function renameTabs(tabs: Tabs, from: string, to: string): Tabs {
  const move = (p: string) => (p === from ? to : p.startsWith(`${from}/`) ? to + p.slice(from.length) : p);
  return {
    files: tabs.files.map((f) => ({ ...f, path: move(f.path) })),
    active: tabs.active === undefined ? undefined : move(tabs.active),
  };
}

export interface DiffLine {
  kind: "same" | "add" | "del";
  text: string;
}

/**
 * A line diff from `theirs` to `mine` (longest common subsequence). Large inputs fall back to
 * "all of theirs removed, all of mine added" rather than an O(n·m) table of millions of cells.
 */
export function lineDiff(theirs: string, mine: string, maxCells = 4_000_000): DiffLine[] {
  const a = theirs.split("\n");
  const b = mine.split("\n");
  if (a.length * b.length > maxCells) {
    return [...a.map((text) => ({ kind: "del" as const, text })), ...b.map((text) => ({ kind: "add" as const, text }))];
  }
  const n = a.length;
  const m = b.length;
  // lcs[i * (m + 1) + j]: length of the longest common subsequence of a[i..] and b[j..].
  const lcs = new Uint32Array((n + 1) * (m + 1));
  const at = (i: number, j: number) => lcs[i * (m + 1) + j] ?? 0;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = a[i] === b[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    const left = a[i] ?? "";
    if (left === b[j]) {
      out.push({ kind: "same", text: left });
      i++;
      j++;
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      out.push({ kind: "del", text: left });
      i++;
    } else {
      out.push({ kind: "add", text: b[j] ?? "" });
      j++;
    }
  }
  for (; i < n; i++) out.push({ kind: "del", text: a[i] ?? "" });
  for (; j < m; j++) out.push({ kind: "add", text: b[j] ?? "" });
  return out;
}

/** Only the changed lines with `context` unchanged lines around them ("…" marks a gap). */
export function compactDiff(lines: DiffLine[], context = 2): (DiffLine | "gap")[] {
  const keep = lines.map(() => false);
  lines.forEach((l, idx) => {
    if (l.kind === "same") return;
    for (let k = Math.max(0, idx - context); k <= Math.min(lines.length - 1, idx + context); k++) keep[k] = true;
  });
  const out: (DiffLine | "gap")[] = [];
  lines.forEach((l, idx) => {
    if (keep[idx]) out.push(l);
    else if (out.at(-1) !== "gap") out.push("gap");
  });
  return out;
}
