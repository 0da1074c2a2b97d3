/**
 * Runtime configuration of the editor.
 *
 * Order, per key: `window.__AMICABLE_CONFIG__` (loaded from `/config.js` before the bundle),
 * then the build-time Vite env of the same name, then same-origin defaults.
 */

export type PermissionMode = "default" | "accept_edits" | "bypass";
export type ThinkingLevel = "none" | "think" | "think_hard" | "ultrathink";
/** How the agent identifies users (docs/auth.md); `/auth/me` has the final word. */
export type AuthMode = "none" | "oidc" | "google";

export interface RawConfig {
  VITE_AGENT_WS_URL?: string;
  VITE_AGENT_HTTP_URL?: string;
  VITE_AGENT_PERMISSION_MODE?: string;
  VITE_AGENT_THINKING_LEVEL?: string;
  /** Written by the agent into /config.js; not a Vite key (no VITE_ prefix), so runtime only. */
  AMICABLE_AUTH_MODE?: string;
}

export interface EditorConfig {
  wsUrl: string;
  httpUrl: string;
  permissionMode: PermissionMode | undefined;
  thinkingLevel: ThinkingLevel | undefined;
  /** The auth mode announced by /config.js: a hint until `/auth/me` answers. */
  authMode: AuthMode | undefined;
}

const PERMISSION_MODES: readonly PermissionMode[] = ["default", "accept_edits", "bypass"];
const THINKING_LEVELS: readonly ThinkingLevel[] = ["none", "think", "think_hard", "ultrathink"];
const AUTH_MODES: readonly AuthMode[] = ["none", "oidc", "google"];

function pick(key: keyof RawConfig, runtime: RawConfig, build: RawConfig): string | undefined {
  for (const source of [runtime, build]) {
    const value = source[key];
    if (typeof value === "string" && value.trim() !== "") return value.trim();
  }
  return undefined;
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[]): T | undefined {
  return allowed.find((candidate) => candidate === value);
}

/** The HTTP base derived from a WebSocket URL: ws->http, wss->https, path `/`. */
export function httpFromWs(wsUrl: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/";
  url.search = "";
  url.hash = "";
  return url.toString().replace(/\/$/, "");
}

/**
 * Resolve the configuration.
 *
 * @param runtime `window.__AMICABLE_CONFIG__` (may be undefined when /config.js is missing)
 * @param build the Vite build-time env (`import.meta.env`)
 * @param origin the page's `location.origin`, used for same-origin defaults
 */
export function resolveConfig(
  runtime: RawConfig | undefined,
  build: RawConfig,
  origin: string,
): EditorConfig {
  const rt = runtime ?? {};
  const wsUrl =
    pick("VITE_AGENT_WS_URL", rt, build) ?? `${origin.replace(/^http/, "ws")}/ws`;
  const httpUrl = (
    pick("VITE_AGENT_HTTP_URL", rt, build) ??
    (pick("VITE_AGENT_WS_URL", rt, build) ? httpFromWs(wsUrl) : origin)
  ).replace(/\/$/, "");
  return {
    wsUrl,
    httpUrl,
    permissionMode: oneOf(pick("VITE_AGENT_PERMISSION_MODE", rt, build), PERMISSION_MODES),
    thinkingLevel: oneOf(pick("VITE_AGENT_THINKING_LEVEL", rt, build), THINKING_LEVELS),
    authMode: oneOf(pick("AMICABLE_AUTH_MODE", rt, build)?.toLowerCase(), AUTH_MODES),
  };
}

declare global {
  interface Window {
    __AMICABLE_CONFIG__?: RawConfig;
  }
}

let cached: EditorConfig | undefined;

/** The configuration of this page (resolved once). */
export function editorConfig(): EditorConfig {
  cached ??= resolveConfig(
    window.__AMICABLE_CONFIG__,
    import.meta.env as unknown as RawConfig,
    window.location.origin,
  );
  return cached;
}
