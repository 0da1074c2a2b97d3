import { describe, expect, it } from "vitest";
import { httpFromWs, resolveConfig, type RawConfig } from "./config";

describe("config resolution", () => {
  it("defaults to the page's own origin", () => {
    expect(resolveConfig(undefined, {}, "https://amicable.example.com")).toEqual({
      wsUrl: "wss://amicable.example.com/ws",
      httpUrl: "https://amicable.example.com",
      permissionMode: undefined,
      thinkingLevel: undefined,
      authMode: undefined,
    });
    expect(resolveConfig({}, {}, "http://localhost:8000").wsUrl).toBe("ws://localhost:8000/ws");
  });

  it("runtime config wins over the build-time env", () => {
    const c = resolveConfig(
      { VITE_AGENT_WS_URL: "wss://rt.example/ws" },
      { VITE_AGENT_WS_URL: "ws://build.example/ws", VITE_AGENT_THINKING_LEVEL: "think" },
      "http://page",
    );
    expect(c.wsUrl).toBe("wss://rt.example/ws");
    expect(c.httpUrl).toBe("https://rt.example");
    expect(c.thinkingLevel).toBe("think");
  });

  it("uses the build-time env when the runtime value is empty", () => {
    const c = resolveConfig({ VITE_AGENT_WS_URL: "  " }, { VITE_AGENT_WS_URL: "ws://build:9000/" }, "http://page");
    expect(c.wsUrl).toBe("ws://build:9000/");
    expect(c.httpUrl).toBe("http://build:9000");
  });

  it("takes an explicit HTTP URL and drops a trailing slash", () => {
    const c = resolveConfig({ VITE_AGENT_HTTP_URL: "https://api.example/" }, {}, "http://page");
    expect(c.httpUrl).toBe("https://api.example");
    expect(c.wsUrl).toBe("ws://page/ws");
  });

  it("ignores invalid permission modes and thinking levels", () => {
    const c = resolveConfig({ VITE_AGENT_PERMISSION_MODE: "yolo", VITE_AGENT_THINKING_LEVEL: "ultrathink" }, {}, "http://p");
    expect(c.permissionMode).toBeUndefined();
    expect(c.thinkingLevel).toBe("ultrathink");
  });

  it("reads the auth mode from /config.js and ignores anything it does not know", () => {
    expect(resolveConfig({ AMICABLE_AUTH_MODE: "oidc" }, {}, "http://p").authMode).toBe("oidc");
    expect(resolveConfig({ AMICABLE_AUTH_MODE: " Google " }, {}, "http://p").authMode).toBe("google");
    expect(resolveConfig({ AMICABLE_AUTH_MODE: "none" }, {}, "http://p").authMode).toBe("none");
    expect(resolveConfig({ AMICABLE_AUTH_MODE: "saml" }, {}, "http://p").authMode).toBeUndefined();
    expect(resolveConfig({ AMICABLE_AUTH_MODE: "" }, {}, "http://p").authMode).toBeUndefined();
    // An old /config.js without the key keeps working (the editor then asks /auth/me).
    const old = resolveConfig({ VITE_AGENT_WS_URL: "wss://a.example/ws", VITE_AGENT_HTTP_URL: "https://a.example" }, {}, "http://p");
    expect(old).toMatchObject({ wsUrl: "wss://a.example/ws", httpUrl: "https://a.example", authMode: undefined });
  });

  it("does not let a non-string auth mode through", () => {
    const runtime = { AMICABLE_AUTH_MODE: 42 } as unknown as RawConfig;
    expect(resolveConfig(runtime, {}, "http://p").authMode).toBeUndefined();
  });

  it("derives http from ws URLs", () => {
    expect(httpFromWs("wss://a.example/ws?x=1")).toBe("https://a.example");
    expect(httpFromWs("ws://a:1/")).toBe("http://a:1");
  });
});
