/**
 * Renders the app only for a signed-in user (or when logins are off); otherwise the sign-in
 * screen. Asks /auth/me once and turns a 401 from any request into "signed out".
 */
import { useEffect, useState, useSyncExternalStore, type ReactNode } from "react";
import { onUnauthorized } from "../api/http";
import type { AuthStore } from "../state/auth";
import { AuthContext } from "../state/useAuth";
import { SignInScreen } from "./SignInScreen";

interface Props {
  store: AuthStore;
  children: ReactNode;
  /** Passed to the sign-in screen (tests). */
  go?: (url: string) => void;
}

function Unreachable({ message, onRetry }: { message: string; onRetry: () => Promise<void> }) {
  const [retrying, setRetrying] = useState(false);
  return (
    <div className="center-page">
      <div className="card notice-card" data-testid="auth-unreachable">
        <h2>Cannot reach the agent</h2>
        <p className="muted">{message}</p>
        <button
          className="btn primary"
          disabled={retrying}
          onClick={() => {
            setRetrying(true);
            void onRetry().finally(() => setRetrying(false));
          }}
        >
          {retrying ? "Trying…" : "Try again"}
        </button>
      </div>
    </div>
  );
}

export function AuthGate({ store, children, go }: Props) {
  const auth = useSyncExternalStore(store.subscribe, store.getSnapshot);
  useEffect(() => {
    store.start();
    return onUnauthorized(() => store.expire());
  }, [store]);

  switch (auth.kind) {
    case "checking":
      return <div className="center-page" data-testid="auth-checking" aria-busy="true" />;
    case "unreachable":
      return <Unreachable message={auth.message} onRetry={() => store.check()} />;
    case "signed_out":
      return <SignInScreen notice={auth.notice} go={go} />;
    case "assumed":
    case "signed_in":
      return <AuthContext.Provider value={store}>{children}</AuthContext.Provider>;
  }
}
