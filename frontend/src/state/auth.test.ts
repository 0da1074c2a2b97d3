import { describe, expect, it, vi } from "vitest";
import type { Me } from "../api/auth";
import { AuthStore, initialAuth, reduceAuth, SESSION_ENDED } from "./auth";

const ALICE = { sub: "u-1", email: "alice@example.com", name: "Alice", picture: null };
const signedIn: Me = { authenticated: true, mode: "oidc", user: ALICE };
const signedOut: Me = { authenticated: false, mode: "oidc", user: null };

describe("auth state", () => {
  it("waits for /auth/me only when /config.js says logins are on", () => {
    expect(initialAuth("oidc")).toEqual({ kind: "checking" });
    expect(initialAuth("google")).toEqual({ kind: "checking" });
    expect(initialAuth("none")).toEqual({ kind: "assumed" });
    expect(initialAuth(undefined)).toEqual({ kind: "assumed" });
  });

  it("follows /auth/me", () => {
    expect(reduceAuth({ kind: "checking" }, { type: "me", me: signedIn })).toEqual({
      kind: "signed_in",
      mode: "oidc",
      user: ALICE,
    });
    expect(reduceAuth({ kind: "checking" }, { type: "me", me: signedOut })).toEqual({ kind: "signed_out", mode: "oidc" });
    // `none` is always "in", whatever `authenticated` says.
    expect(reduceAuth({ kind: "assumed" }, { type: "me", me: { authenticated: false, mode: "none", user: null } })).toMatchObject({
      kind: "signed_in",
      mode: "none",
    });
  });

  it("a 401 signs out with a notice, except without logins", () => {
    const expired = reduceAuth({ kind: "signed_in", mode: "google", user: ALICE }, { type: "expired", notice: SESSION_ENDED });
    expect(expired).toEqual({ kind: "signed_out", mode: "google", notice: SESSION_ENDED });
    const local = { kind: "signed_in", mode: "none", user: null } as const;
    expect(reduceAuth(local, { type: "expired", notice: SESSION_ENDED })).toBe(local);
    // Before /auth/me answered, a 401 is proof enough that logins are on.
    expect(reduceAuth({ kind: "assumed" }, { type: "expired", notice: SESSION_ENDED })).toMatchObject({ kind: "signed_out" });
  });

  it("keeps the notice when /auth/me confirms the sign-out", () => {
    const out = reduceAuth({ kind: "signed_out", mode: "oidc", notice: SESSION_ENDED }, { type: "me", me: signedOut });
    expect(out).toEqual({ kind: "signed_out", mode: "oidc", notice: SESSION_ENDED });
  });

  it("blocks on an unreachable agent only while waiting for the first answer", () => {
    expect(reduceAuth({ kind: "checking" }, { type: "me_failed", message: "down" })).toEqual({ kind: "unreachable", message: "down" });
    const assumed = { kind: "assumed" } as const;
    expect(reduceAuth(assumed, { type: "me_failed", message: "down" })).toBe(assumed);
  });
});

describe("AuthStore", () => {
  it("asks /auth/me once however often it is started", async () => {
    const loadMe = vi.fn(async () => signedIn);
    const store = new AuthStore(loadMe, "oidc");
    const seen: string[] = [];
    store.subscribe(() => seen.push(store.getSnapshot().kind));
    store.start();
    store.start();
    await vi.waitFor(() => expect(store.getSnapshot().kind).toBe("signed_in"));
    expect(loadMe).toHaveBeenCalledTimes(1);
    expect(seen).toEqual(["signed_in"]);
  });

  it("ignores a 'signed in' answer that was already on its way when a 401 arrived", async () => {
    let answer: (me: Me) => void = () => undefined;
    const store = new AuthStore(() => new Promise<Me>((resolve) => (answer = resolve)), undefined);
    const pending = store.check();
    store.expire();
    answer(signedIn);
    await pending;
    expect(store.getSnapshot()).toEqual({ kind: "signed_out", mode: "oidc", notice: SESSION_ENDED });
  });

  it("never leaves a page without logins on the sign-in screen", async () => {
    let answer: (me: Me) => void = () => undefined;
    const store = new AuthStore(() => new Promise<Me>((resolve) => (answer = resolve)), "none");
    const pending = store.check();
    store.expire(); // a stray 401 before /auth/me answered
    expect(store.getSnapshot().kind).toBe("signed_out");
    answer({ authenticated: true, mode: "none", user: { sub: "local" } });
    await pending;
    expect(store.getSnapshot()).toEqual({ kind: "signed_in", mode: "none", user: { sub: "local" } });
  });

  it("re-checks a policy close: signed out only if /auth/me agrees", async () => {
    const me = vi.fn<() => Promise<Me>>(async () => signedIn);
    const store = new AuthStore(me, "oidc");
    await store.check(SESSION_ENDED);
    expect(store.getSnapshot().kind).toBe("signed_in");
    me.mockResolvedValueOnce(signedOut);
    await store.check(SESSION_ENDED);
    expect(store.getSnapshot()).toEqual({ kind: "signed_out", mode: "oidc", notice: SESSION_ENDED });
  });

  it("reports an unreachable agent in plain words and recovers on retry", async () => {
    const me = vi.fn<() => Promise<Me>>(async () => {
      throw new TypeError("Failed to fetch");
    });
    const store = new AuthStore(me, "google");
    await store.check();
    expect(store.getSnapshot()).toEqual({
      kind: "unreachable",
      message: "The agent could not be reached. Check that it is running, then try again.",
    });
    me.mockResolvedValueOnce({ ...signedIn, mode: "google" });
    await store.check();
    expect(store.getSnapshot()).toMatchObject({ kind: "signed_in", mode: "google" });
  });
});
