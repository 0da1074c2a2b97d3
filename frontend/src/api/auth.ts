/** The agent's login endpoints (docs/auth.md): who is signed in, where to sign in and out. */
import { editorConfig, type AuthMode } from "../config";
import { ApiError, request } from "./http";

export interface AuthUser {
  sub: string;
  email?: string | null;
  name?: string | null;
  picture?: string | null;
}

export interface Me {
  authenticated: boolean;
  mode: AuthMode;
  user: AuthUser | null;
}

const MODES: readonly AuthMode[] = ["none", "oidc", "google"];

/**
 * `GET /auth/me`. An agent older than logins answers 404: that is `none` (one local user).
 * A 401 means signed out; it is not reported as an expired session (nothing expired yet).
 */
export async function fetchMe(): Promise<Me> {
  try {
    const me = await request<Partial<Me> | undefined>("GET", "/auth/me", undefined, { reportUnauthorized: false });
    const mode = MODES.find((m) => m === me?.mode) ?? "none";
    return { authenticated: me?.authenticated === true, mode, user: me?.user ?? null };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { authenticated: true, mode: "none", user: null };
    if (err instanceof ApiError && err.status === 401) {
      return { authenticated: false, mode: editorConfig().authMode === "google" ? "google" : "oidc", user: null };
    }
    throw err;
  }
}

/** Where "Sign in" goes: the agent's login, coming back to `returnTo` afterwards. */
export function loginUrl(returnTo: string, httpUrl: string = editorConfig().httpUrl): string {
  return `${httpUrl}/auth/login?redirect=${encodeURIComponent(returnTo)}`;
}

/** Where "Sign out" goes: the agent ends the login and sends the browser back to `origin`. */
export function logoutUrl(origin: string, httpUrl: string = editorConfig().httpUrl): string {
  return `${httpUrl}/auth/logout?redirect=${encodeURIComponent(origin)}`;
}
