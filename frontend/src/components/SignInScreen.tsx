/** The only thing a signed-out visitor sees when logins are on: the product and "Sign in". */
import { loginUrl } from "../api/auth";
import { Logo } from "./ThemeToggle";

interface Props {
  /** Why the user is here again (an expired login); nothing on a first visit. */
  notice?: string;
  /** Leaves the page for the agent's login (tests pass a spy). */
  go?: (url: string) => void;
}

/** The reason the agent gave when it sent the browser back from a failed login. */
export function loginError(search: string): string | undefined {
  const detail = new URLSearchParams(search).get("login_error");
  return detail ? `Sign-in failed: ${detail.slice(0, 300)}` : undefined;
}

export function SignInScreen({ notice, go = (url) => window.location.assign(url) }: Props) {
  notice = notice ?? loginError(window.location.search);
  return (
    <div className="center-page">
      <main className="card notice-card sign-in" data-testid="sign-in">
        <h1 className="sign-in-title">
          <Logo />
        </h1>
        {notice && (
          <p className="sign-in-notice" role="status" data-testid="sign-in-notice">
            {notice}
          </p>
        )}
        <button
          type="button"
          className="btn primary"
          data-testid="sign-in-button"
          autoFocus
          onClick={() => go(loginUrl(window.location.href))}
        >
          Sign in
        </button>
      </main>
    </div>
  );
}
