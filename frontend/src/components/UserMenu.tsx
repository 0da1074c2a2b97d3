/** The signed-in user in the top bar: avatar or initial; opens name, e-mail and "Sign out". */
import { useEffect, useRef, useState } from "react";
import { logoutUrl, type AuthUser } from "../api/auth";
import { useSignedInUser } from "../state/useAuth";

function initial(user: AuthUser): string {
  const source = (user.name || user.email || user.sub).trim();
  return (source[0] ?? "?").toUpperCase();
}

function Avatar({ user }: { user: AuthUser }) {
  // A picture the page may not load (CSP, offline, expired URL) falls back to the initial.
  const [broken, setBroken] = useState(false);
  if (user.picture && !broken) {
    return (
      <img className="avatar" src={user.picture} alt="" referrerPolicy="no-referrer" onError={() => setBroken(true)} />
    );
  }
  return (
    <span className="avatar avatar-initial" aria-hidden="true">
      {initial(user)}
    </span>
  );
}

/** Nothing without logins (`none` mode) or before /auth/me answered. */
export function UserMenu() {
  const user = useSignedInUser();
  const [open, setOpen] = useState(false);
  const rootRef = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    const onPointer = (e: PointerEvent) => {
      if (!rootRef.current?.contains(e.target as Node)) setOpen(false);
    };
    window.addEventListener("keydown", onKey);
    window.addEventListener("pointerdown", onPointer);
    return () => {
      window.removeEventListener("keydown", onKey);
      window.removeEventListener("pointerdown", onPointer);
    };
  }, [open]);

  if (!user) return null;
  const label = user.name || user.email || "Account";
  return (
    <div className="user-menu" ref={rootRef}>
      <button
        type="button"
        className="icon-btn user-menu-button"
        data-testid="user-menu"
        aria-expanded={open}
        aria-controls="user-menu-panel"
        aria-label={`Account: ${label}`}
        title={label}
        onClick={() => setOpen((o) => !o)}
      >
        <Avatar user={user} />
      </button>
      {open && (
        <div className="user-menu-panel card" id="user-menu-panel" data-testid="user-menu-panel">
          <div className="user-menu-who">
            {user.name && <strong data-testid="user-name">{user.name}</strong>}
            {user.email && (
              <span className="muted small" data-testid="user-email">
                {user.email}
              </span>
            )}
          </div>
          <a className="btn small" href={logoutUrl(window.location.origin)} data-testid="sign-out">
            Sign out
          </a>
        </div>
      )}
    </div>
  );
}
