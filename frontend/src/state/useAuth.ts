/** React access to the page's AuthStore (provided by AuthGate). */
import { createContext, useContext, useEffect, useSyncExternalStore } from "react";
import type { ConnectionStatus } from "../ws/socket";
import { SESSION_ENDED, type AuthState, type AuthStore } from "./auth";

export const AuthContext = createContext<AuthStore | undefined>(undefined);

const ASSUMED: AuthState = { kind: "assumed" };
const noop = () => () => undefined;

/** The store, or undefined outside an AuthGate (tests of single components). */
export function useAuthStore(): AuthStore | undefined {
  return useContext(AuthContext);
}

/** The current auth state ("assumed" outside an AuthGate). */
export function useAuth(): AuthState {
  const store = useContext(AuthContext);
  return useSyncExternalStore(store?.subscribe ?? noop, store?.getSnapshot ?? (() => ASSUMED));
}

/** Logins are on and someone is signed in (user menu, sharing). */
export function useSignedInUser() {
  const auth = useAuth();
  return auth.kind === "signed_in" && auth.mode !== "none" ? auth.user : null;
}

/**
 * The agent closes the WebSocket with 1008 (policy) when the login behind it ended; it may
 * also mean something else (a refused origin), so /auth/me decides whether to sign out.
 */
export function useSignOutOnPolicyClose(connection: ConnectionStatus): void {
  const store = useContext(AuthContext);
  useEffect(() => {
    if (connection.kind === "closed" && connection.code === 1008) void store?.check(SESSION_ENDED);
  }, [connection, store]);
}
