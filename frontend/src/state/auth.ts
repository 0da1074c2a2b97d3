/**
 * Who is signed in: the answer of `GET /auth/me`, a 401 from any request (the login expired)
 * and a WebSocket closed for policy (1008). Pure reducer plus a tiny observable store.
 */
import type { AuthUser, Me } from "../api/auth";
import type { AuthMode } from "../config";
import { failureSentence } from "./errors";

export type AuthState =
  /** /auth/me has not answered and /config.js says logins are on: show nothing yet. */
  | { kind: "checking" }
  /** /auth/me has not answered and logins are off (or /config.js is old): show the app. */
  | { kind: "assumed" }
  | { kind: "signed_in"; mode: AuthMode; user: AuthUser | null }
  | { kind: "signed_out"; mode: AuthMode; notice?: string }
  /** /auth/me failed while logins are on: say so and offer to retry. */
  | { kind: "unreachable"; message: string };

export type AuthAction =
  | { type: "me"; me: Me; notice?: string }
  | { type: "me_failed"; message: string }
  | { type: "expired"; notice: string };

/** What the sign-in screen says after an expired login or a WebSocket closed for policy. */
export const SESSION_ENDED = "Your session ended — sign in again.";

export function initialAuth(hint: AuthMode | undefined): AuthState {
  return hint === "oidc" || hint === "google" ? { kind: "checking" } : { kind: "assumed" };
}

export function reduceAuth(state: AuthState, action: AuthAction): AuthState {
  switch (action.type) {
    case "me": {
      const { me } = action;
      if (me.mode === "none" || me.authenticated) return { kind: "signed_in", mode: me.mode, user: me.user };
      const notice = action.notice ?? (state.kind === "signed_out" ? state.notice : undefined);
      return notice ? { kind: "signed_out", mode: me.mode, notice } : { kind: "signed_out", mode: me.mode };
    }
    case "me_failed":
      // Only block the page when it is waiting for the answer; otherwise the app's own errors say enough.
      return state.kind === "checking" || state.kind === "unreachable"
        ? { kind: "unreachable", message: action.message }
        : state;
    case "expired":
      // Without logins nothing can expire; a stray 401 then is the page's own error to show.
      if (state.kind === "signed_in" && state.mode === "none") return state;
      if (state.kind === "signed_out" && state.notice === action.notice) return state;
      return { kind: "signed_out", mode: "mode" in state ? state.mode : "oidc", notice: action.notice };
  }
}

/** The page's auth state; `AuthGate` starts it and renders by it. */
export class AuthStore {
  private state: AuthState;
  private readonly listeners = new Set<() => void>();
  /** Bumped by every expiry: an older /auth/me answer saying "signed in" is stale. */
  private generation = 0;
  private started = false;

  constructor(
    private readonly loadMe: () => Promise<Me>,
    hint: AuthMode | undefined,
  ) {
    this.state = initialAuth(hint);
  }

  readonly getSnapshot = (): AuthState => this.state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  dispatch(action: AuthAction): void {
    const next = reduceAuth(this.state, action);
    if (next === this.state) return;
    this.state = next;
    this.listeners.forEach((fn) => fn());
  }

  /** Ask /auth/me once per page (StrictMode mounts twice). */
  start(): void {
    if (this.started) return;
    this.started = true;
    void this.check();
  }

  /**
   * Ask /auth/me; `notice` is shown if it says signed out (a WebSocket closed with 1008 is
   * re-checked this way: a policy close with a valid login is not an expired session).
   */
  async check(notice?: string): Promise<void> {
    const generation = this.generation;
    try {
      const me = await this.loadMe();
      // Stale: "signed in" sent before a 401 arrived. `none` is never stale (nothing to sign in to).
      if (me.authenticated && me.mode !== "none" && generation !== this.generation) return;
      this.dispatch(notice ? { type: "me", me, notice } : { type: "me", me });
    } catch (err) {
      this.dispatch({ type: "me_failed", message: failureSentence(err) });
    }
  }

  /** A request was answered 401: the login is gone. */
  expire(notice: string = SESSION_ENDED): void {
    this.generation += 1;
    this.dispatch({ type: "expired", notice });
  }
}
