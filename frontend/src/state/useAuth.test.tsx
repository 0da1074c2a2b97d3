// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Me } from "../api/auth";
import { AuthGate } from "../components/AuthGate";
import { byTestId, cleanup, flush, queryTestId, render } from "../test/dom";
import type { ConnectionStatus } from "../ws/socket";
import { AuthStore, SESSION_ENDED } from "./auth";
import { useSignOutOnPolicyClose } from "./useAuth";

const IN: Me = { authenticated: true, mode: "oidc", user: { sub: "u", email: "u@example.com", name: "U" } };
const OUT: Me = { authenticated: false, mode: "oidc", user: null };

function Editor({ connection }: { connection: ConnectionStatus }) {
  useSignOutOnPolicyClose(connection);
  return <div data-testid="editor" />;
}

afterEach(cleanup);

describe("a WebSocket closed for policy (1008)", () => {
  it("shows the sign-in screen with 'Your session ended' once /auth/me says signed out", async () => {
    const me = vi.fn<() => Promise<Me>>(async () => IN);
    const store = new AuthStore(me, "oidc");
    const ui = (connection: ConnectionStatus) => (
      <AuthGate store={store}>
        <Editor connection={connection} />
      </AuthGate>
    );
    const { container, rerender } = render(ui({ kind: "open" }));
    await flush();
    expect(queryTestId("editor", container)).not.toBeNull();
    me.mockResolvedValue(OUT);
    // Another close code changes nothing.
    rerender(ui({ kind: "closed", code: 1011, reason: "", final: true }));
    await flush();
    expect(queryTestId("sign-in")).toBeNull();
    rerender(ui({ kind: "closed", code: 1008, reason: "session ended", final: true }));
    await flush();
    expect(byTestId("sign-in-notice").textContent).toBe(SESSION_ENDED);
    expect(queryTestId("editor", container)).toBeNull();
  });

  it("leaves a signed-in user in the editor when the close had another reason", async () => {
    const store = new AuthStore(async () => IN, "oidc");
    render(
      <AuthGate store={store}>
        <Editor connection={{ kind: "closed", code: 1008, reason: "forbidden_origin", final: true }} />
      </AuthGate>,
    );
    await flush();
    expect(queryTestId("editor")).not.toBeNull();
    expect(queryTestId("sign-in")).toBeNull();
  });
});
