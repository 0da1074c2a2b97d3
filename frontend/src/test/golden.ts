/** Reads the protocol golden files under tests/protocol/golden (shared with the Python tests). */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

export const GOLDEN_DIR = fileURLToPath(new URL("../../../tests/protocol/golden/", import.meta.url));

/** The raw text of every golden file of `kind` (server, client, editor), by file name. */
export function goldenFrames(kind: "server" | "client" | "editor"): Map<string, string> {
  const dir = join(GOLDEN_DIR, kind);
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  return new Map(files.map((f) => [f, readFileSync(join(dir, f), "utf8")]));
}

export function goldenFrame(kind: "server" | "client" | "editor", name: string): string {
  return readFileSync(join(GOLDEN_DIR, kind, name), "utf8");
}
