/** A tiny history router: `/` (projects) and `/p/:slug` (editor). */
import { useEffect, useState } from "react";

export type Route = { name: "projects" } | { name: "editor"; slug: string };

export function parseRoute(pathname: string): Route {
  const m = /^\/p\/([^/]+)\/?$/.exec(pathname);
  if (m?.[1] !== undefined) return { name: "editor", slug: decodeURIComponent(m[1]) };
  return { name: "projects" };
}

const listeners = new Set<() => void>();

/** Navigate without reloading; `state` is kept in history.state (e.g. the first prompt). */
export function navigate(path: string, state?: unknown): void {
  window.history.pushState(state ?? null, "", path);
  listeners.forEach((fn) => fn());
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.pathname));
    listeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return route;
}
