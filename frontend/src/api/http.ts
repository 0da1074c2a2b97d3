/**
 * JSON API of the agent: projects (upstream §2.3) and the sandbox file system (§2.5).
 */
import { editorConfig } from "../config";
import type { CheckpointDiff, TurnPage } from "../protocol/types.gen";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail?: string,
    readonly body?: unknown,
  ) {
    super(detail ? `${code}: ${detail}` : code);
  }
}

const unauthorizedListeners = new Set<() => void>();

/**
 * Call `listener` whenever a request is answered 401 (the login expired or was revoked).
 * Returns the unsubscribe function.
 */
export function onUnauthorized(listener: () => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export interface RequestOptions {
  /** Tell the onUnauthorized listeners about a 401 (default true; off for /auth/me itself). */
  reportUnauthorized?: boolean;
}

export async function request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const init: RequestInit = { method, credentials: "include", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const res = await fetch(`${editorConfig().httpUrl}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (res.status === 401 && options.reportUnauthorized !== false) unauthorizedListeners.forEach((fn) => fn());
  if (!res.ok) {
    const rec = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
    const code = typeof rec.error === "string" ? rec.error : `http_${res.status}`;
    const detail = typeof rec.detail === "string" ? rec.detail : text.slice(0, 300) || undefined;
    throw new ApiError(res.status, code, detail, json);
  }
  return json as T;
}

/** The caller's role in a project (docs/auth.md, "Who can do what"). */
export type ProjectRole = "owner" | "editor" | "viewer";

export interface ProjectSummary {
  /** Missing from agents older than logins: the caller owns everything there. */
  role?: ProjectRole;
  project_id: string;
  name: string;
  slug: string;
  template_id: string;
  created_at?: string;
  updated_at?: string;
}

export interface CreatedProject {
  project_id: string;
  name: string;
  slug: string;
  prompt?: string | null;
  template_id: string;
}

export const projectsApi = {
  list: () => request<{ projects: ProjectSummary[] }>("GET", "/api/projects").then((r) => r.projects),
  create: (body: { name?: string; prompt?: string; template_id?: string }) =>
    request<CreatedProject>("POST", "/api/projects", body),
  bySlug: (slug: string) =>
    request<ProjectSummary>("GET", `/api/projects/by-slug/${encodeURIComponent(slug)}`),
  rename: (id: string, name: string) =>
    request<{ project_id: string; name: string; slug: string }>("PATCH", `/api/projects/${id}`, { name }),
  remove: (id: string) => request<{ status: string }>("DELETE", `/api/projects/${id}`),
};

export interface FsEntry {
  path: string;
  name: string;
  is_dir: boolean;
}

export interface FileContent {
  path: string;
  content: string | null;
  sha256: string;
  is_binary: boolean;
}

function q(path: string): string {
  return encodeURIComponent(path);
}

/** The Code pane's file API for one project's sandbox. */
export function sandboxFs(projectId: string) {
  const base = `/api/sandbox/${encodeURIComponent(projectId)}`;
  return {
    ls: (path: string) => request<{ path: string; entries: FsEntry[] }>("GET", `${base}/ls?path=${q(path)}`),
    read: (path: string) => request<FileContent>("GET", `${base}/read?path=${q(path)}`),
    write: (path: string, content: string, expectedSha256?: string) =>
      request<{ path: string; sha256: string }>("PUT", `${base}/write`, {
        path,
        content,
        ...(expectedSha256 ? { expected_sha256: expectedSha256 } : {}),
      }),
    create: (path: string, kind: "file" | "dir", content = "") =>
      request<{ path: string; sha256?: string }>("POST", `${base}/create`, {
        path,
        kind,
        ...(kind === "file" ? { content } : {}),
      }),
    rename: (from: string, to: string) => request<{ from: string; to: string }>("POST", `${base}/rename`, { from, to }),
    rm: (path: string, recursive: boolean) =>
      request<{ path: string }>("DELETE", `${base}/rm?path=${q(path)}&recursive=${recursive ? 1 : 0}`),
  };
}

export type SandboxFs = ReturnType<typeof sandboxFs>;

/** Where the browser downloads a project's files (dependencies, build output and .env* left out). */
export function downloadUrl(projectId: string, format: "zip" | "tar.gz" = "zip"): string {
  return `${editorConfig().httpUrl}/api/sandbox/${encodeURIComponent(projectId)}/download?format=${format}`;
}

/** A file left out of a checkpoint because it is bigger than the agent's limit. */
export interface SkippedFile {
  path: string;
  bytes: number;
}

/** One checkpoint of a project's history (a commit in the sandbox's own git repository). */
export interface Checkpoint {
  sha: string;
  title: string;
  /** Unix time in seconds. */
  created_at: number;
  files_changed: number;
  /** Files left out as too big (agents before this field send none). */
  skipped?: SkippedFile[];
}

export interface RestoreResult {
  checkpoint: Checkpoint;
  restored_to: Checkpoint;
  saved: Checkpoint | null;
  changed_paths: string[];
  dependencies: "unchanged" | "installed" | "failed";
  /** What the restore did to the database schema (agents before this field send none). */
  schema_rollback?: SchemaRollback;
}

/** The schema changes a restore undid: `rolled_back`, `none`, `skipped` or `no_database`. */
export interface SchemaRollback {
  status: string;
  migrations: string[];
  steps: string[];
  sql: string[];
  data_lost: string[];
  detail: string | null;
  /** Migration files the restore brought back: not applied again. */
  not_reapplied?: string[];
}

/** The project's checkpoints (newest first) and restoring one. */
export function checkpointsApi(projectId: string) {
  const base = `/api/sandbox/${encodeURIComponent(projectId)}/checkpoints`;
  return {
    list: () => request<{ checkpoints: Checkpoint[] }>("GET", base).then((r) => r.checkpoints),
    /** With `keepSchema`, the files alone go back (the database schema stays as it is). */
    restore: (sha: string, keepSchema = false) =>
      request<RestoreResult>(
        "POST",
        `${base}/${encodeURIComponent(sha)}/restore`,
        keepSchema ? { skip_schema_rollback: true } : undefined,
      ),
    /** What the checkpoint changed against the one before it (size-capped by the agent). */
    diff: (sha: string) => request<CheckpointDiff>("GET", `${base}/${encodeURIComponent(sha)}/diff`),
  };
}

/** The role an invite gives: the owner is never invited. */
/** Older turns of a project's chat, as they were shown (INIT carries the newest page). */
export function turnsApi(projectId: string) {
  const base = `/api/projects/${encodeURIComponent(projectId)}/turns`;
  return {
    before: (cursor: number) => request<TurnPage>("GET", `${base}?before=${cursor}`),
  };
}

export type InviteRole = Exclude<ProjectRole, "owner">;

export interface Member {
  user_sub: string;
  email?: string | null;
  name?: string | null;
  role: ProjectRole;
}

export interface Invite {
  email: string;
  role: InviteRole;
}

/** A project's members and pending invites; inviting and removing are for the owner. */
export function membersApi(projectId: string) {
  const base = `/api/projects/${encodeURIComponent(projectId)}/members`;
  return {
    list: () => request<{ members: Member[]; invites: Invite[] }>("GET", base),
    invite: (email: string, role: InviteRole) => request<Member | Invite>("POST", base, { email, role }),
    removeMember: (userSub: string) => request<unknown>("DELETE", `${base}/${encodeURIComponent(userSub)}`),
    removeInvite: (email: string) => request<unknown>("DELETE", `${base}/by-email/${encodeURIComponent(email)}`),
  };
}
