// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import { App } from "../App";
import { fetchMe } from "../api/auth";
import { AuthStore, SESSION_ENDED } from "../state/auth";
import { byTestId, cleanup, click, flush, queryTestId, render, stubFetch } from "../test/dom";
import { AuthGate } from "./AuthGate";

const ALICE = { sub: "u-1", email: "alice@example.com", name: "Alice Liddell", picture: null };
const PROJECT = { project_id: "p1", name: "Todo", slug: "todo", template_id: "vite", updated_at: "2026-01-01T00:00:00Z" };

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("the sign-in gate", () => {
  it("shows only the sign-in screen to a signed-out visitor when logins are on", async () => {
    const calls = stubFetch({ "GET /auth/me": { body: { authenticated: false, mode: "oidc", user: null } } });
    const go = vi.fn();
    render(
      <AuthGate store={new AuthStore(fetchMe, "oidc")} go={go}>
        <div data-testid="app">app</div>
      </AuthGate>,
    );
    expect(queryTestId("auth-checking")).not.toBeNull();
    await flush();
    expect(queryTestId("app")).toBeNull();
    expect(byTestId("sign-in").textContent).toContain("Amicable");
    expect(queryTestId("sign-in-notice")).toBeNull();
    click(byTestId("sign-in-button"));
    expect(go).toHaveBeenCalledWith(`http://localhost:3000/auth/login?redirect=${encodeURIComponent(window.location.href)}`);
    expect(calls).toEqual([{ method: "GET", path: "/auth/me", body: undefined, credentials: "include" }]);
  });

  it("shows the app and the user menu to a signed-in user", async () => {
    stubFetch({
      "GET /auth/me": { body: { authenticated: true, mode: "google", user: ALICE } },
      "GET /api/projects": { body: { projects: [PROJECT] } },
    });
    render(<App store={new AuthStore(fetchMe, "google")} />);
    await flush();
    expect(queryTestId("sign-in")).toBeNull();
    expect(byTestId("project-list").textContent).toContain("Todo");
    const menu = byTestId("user-menu");
    expect(menu.textContent).toBe("A");
    expect(queryTestId("user-menu-panel")).toBeNull();
    click(menu);
    expect(byTestId("user-name").textContent).toBe("Alice Liddell");
    expect(byTestId("user-email").textContent).toBe("alice@example.com");
    expect(byTestId("sign-out").getAttribute("href")).toBe(
      `http://localhost:3000/auth/logout?redirect=${encodeURIComponent("http://localhost:3000")}`,
    );
  });

  it("adds nothing without logins", async () => {
    stubFetch({
      "GET /auth/me": { body: { authenticated: true, mode: "none", user: { sub: "local", email: null, name: null, picture: null } } },
      "GET /api/projects": { body: { projects: [PROJECT] } },
    });
    render(<App store={new AuthStore(fetchMe, "none")} />);
    // Logins off per /config.js: the app shows at once, without waiting for /auth/me.
    expect(queryTestId("project-list")).not.toBeNull();
    await flush();
    expect(queryTestId("user-menu")).toBeNull();
    expect(queryTestId("sign-in")).toBeNull();
  });

  it("treats an agent without /auth/me (404) as one without logins", async () => {
    stubFetch({ "GET /api/projects": { body: { projects: [] } } });
    render(<App store={new AuthStore(fetchMe, undefined)} />);
    await flush();
    expect(queryTestId("sign-in")).toBeNull();
    expect(queryTestId("user-menu")).toBeNull();
  });

  it("sends the user back to sign in with a notice when a request is answered 401", async () => {
    stubFetch({
      "GET /auth/me": { body: { authenticated: true, mode: "oidc", user: ALICE } },
      "GET /api/projects": { status: 401, body: { error: "not_authenticated" } },
    });
    render(<App store={new AuthStore(fetchMe, "oidc")} />);
    await flush();
    expect(queryTestId("project-list")).toBeNull();
    expect(byTestId("sign-in-notice").textContent).toBe(SESSION_ENDED);
  });

  it("says when the agent cannot be reached and retries", async () => {
    let down = true;
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => {
        if (down) throw new TypeError("Failed to fetch");
        return new Response(JSON.stringify({ authenticated: false, mode: "oidc", user: null }));
      }),
    );
    render(
      <AuthGate store={new AuthStore(fetchMe, "oidc")}>
        <div data-testid="app" />
      </AuthGate>,
    );
    await flush();
    expect(byTestId("auth-unreachable").textContent).toContain("could not be reached");
    down = false;
    click(byTestId("auth-unreachable").querySelector("button") as HTMLButtonElement);
    await flush();
    expect(queryTestId("sign-in")).not.toBeNull();
  });
});
