/**
 * Minimal DOM helpers for component tests (files starting with `// @vitest-environment jsdom`):
 * render into a detached root, act-wrapped events, a fetch stub answering by method and path.
 */
import { act, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { vi } from "vitest";

declare global {
  var IS_REACT_ACT_ENVIRONMENT: boolean | undefined;
}
globalThis.IS_REACT_ACT_ENVIRONMENT = true;

export interface Rendered {
  container: HTMLElement;
  rerender: (ui: ReactNode) => void;
  unmount: () => void;
}

const mounted: Root[] = [];

export function render(ui: ReactNode): Rendered {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  mounted.push(root);
  act(() => root.render(ui));
  return {
    container,
    rerender: (next) => act(() => root.render(next)),
    unmount: () => {
      act(() => root.unmount());
      container.remove();
    },
  };
}

/** Unmount everything `render` mounted (call in afterEach). */
export function cleanup(): void {
  while (mounted.length > 0) act(() => mounted.pop()?.unmount());
  document.body.innerHTML = "";
}

/** Let pending promises (fetch answers) and the renders they cause settle. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await act(async () => {
      await new Promise((resolve) => setTimeout(resolve, 0));
    });
  }
}

/** Flush until an element with `testId` shows up (lazy components, chained requests). */
export async function waitForTestId(testId: string, tries = 40): Promise<HTMLElement> {
  for (let i = 0; i < tries; i++) {
    const el = queryTestId(testId);
    if (el) return el;
    await flush();
  }
  return byTestId(testId);
}

export function byTestId<T extends HTMLElement = HTMLElement>(testId: string, root: ParentNode = document): T {
  const el = root.querySelector<T>(`[data-testid="${testId}"]`);
  if (!el) throw new Error(`no element with data-testid="${testId}"`);
  return el;
}

export function queryTestId(testId: string, root: ParentNode = document): HTMLElement | null {
  return root.querySelector<HTMLElement>(`[data-testid="${testId}"]`);
}

export function allTestId(testId: string, root: ParentNode = document): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>(`[data-testid="${testId}"]`));
}

export function click(el: Element): void {
  act(() => {
    (el as HTMLElement).click();
  });
}

export function press(key: string, target: EventTarget = document.activeElement ?? document.body, shiftKey = false): void {
  act(() => {
    target.dispatchEvent(new KeyboardEvent("keydown", { key, shiftKey, bubbles: true, cancelable: true }));
  });
}

/** Set an input's, textarea's or select's value the way React notices (native setter + event). */
export function change(el: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, value: string): void {
  const proto = Object.getPrototypeOf(el) as object;
  const setter = Object.getOwnPropertyDescriptor(proto, "value")?.set;
  act(() => {
    setter?.call(el, value);
    el.dispatchEvent(new Event(el instanceof HTMLSelectElement ? "change" : "input", { bubbles: true }));
  });
}

export function submit(form: HTMLFormElement): void {
  act(() => {
    form.requestSubmit();
  });
}

export interface FetchCall {
  method: string;
  path: string;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

type Answer = { status?: number; body?: unknown } | ((call: FetchCall) => { status?: number; body?: unknown });

/**
 * Stub `fetch`: `routes` maps "METHOD /path" (path without the agent's origin, query kept)
 * to an answer; anything else is a 404 `not_found`. Returns the calls made.
 */
export function stubFetch(routes: Record<string, Answer>): FetchCall[] {
  const calls: FetchCall[] = [];
  const fake = vi.fn(async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input), "http://localhost");
    const method = (init?.method ?? "GET").toUpperCase();
    const call: FetchCall = {
      method,
      path: url.pathname + url.search,
      body: typeof init?.body === "string" ? (JSON.parse(init.body) as unknown) : undefined,
      credentials: init?.credentials,
    };
    calls.push(call);
    const route = routes[`${method} ${call.path}`];
    const answer = typeof route === "function" ? route(call) : route;
    if (!answer) return new Response(JSON.stringify({ error: "not_found" }), { status: 404 });
    const status = answer.status ?? 200;
    return new Response(status === 204 || answer.body === undefined ? null : JSON.stringify(answer.body), { status });
  });
  vi.stubGlobal("fetch", fake);
  return calls;
}
