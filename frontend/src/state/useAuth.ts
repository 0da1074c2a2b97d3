/** React access to the page's AuthStore (provided by AuthGate). */
import { createContext, useContext, useSyncExternalStore } from "react";
import type { AuthState, AuthStore } from "./auth";

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
