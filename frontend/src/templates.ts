/**
 * Project templates. The list the new-project dialog offers comes from the agent
 * (`GET /api/templates`, read from its template registry), so the editor never offers a
 * template the agent cannot build. `TEMPLATES` is only the fallback for an agent too old to
 * answer that route: then only the default template is offered.
 */
import { useEffect, useState } from "react";
import { request } from "./api/http";

export interface TemplateInfo {
  id: string;
  title: string;
  description: string;
}

export const DEFAULT_TEMPLATE = "vite";

/** Titles of the known ids, for projects whose template the agent no longer lists. */
export const TEMPLATES: readonly TemplateInfo[] = [
  { id: "vite", title: "React + Vite", description: "React, TypeScript and Tailwind CSS on Vite" },
  { id: "nextjs15", title: "Next.js 15", description: "Next.js 15 App Router" },
  { id: "remix", title: "React Router (Remix)", description: "React Router v7 framework mode" },
  { id: "sveltekit", title: "SvelteKit", description: "SvelteKit with Svelte 5" },
  { id: "fastapi", title: "FastAPI", description: "A Python API" },
  { id: "hono", title: "Hono API", description: "A TypeScript API on Node" },
  { id: "vue", title: "Vue + Vite", description: "Vue 3 with TypeScript on Vite" },
  { id: "astro", title: "Astro", description: "An Astro 5 site with TypeScript" },
];

export interface TemplateList {
  templates: readonly TemplateInfo[];
  defaultId: string;
}

const FALLBACK: TemplateList = {
  templates: TEMPLATES.filter((t) => t.id === DEFAULT_TEMPLATE),
  defaultId: DEFAULT_TEMPLATE,
};

/** The agent's answer as the dialog's list; anything malformed gives the fallback. */
export function templateList(answer: unknown): TemplateList {
  if (typeof answer !== "object" || answer === null) return FALLBACK;
  const rec = answer as Record<string, unknown>;
  const raw = Array.isArray(rec.templates) ? (rec.templates as unknown[]) : [];
  const templates: TemplateInfo[] = [];
  for (const item of raw) {
    if (typeof item !== "object" || item === null) continue;
    const t = item as Record<string, unknown>;
    if (typeof t.id !== "string" || typeof t.name !== "string") continue;
    templates.push({ id: t.id, title: t.name, description: typeof t.description === "string" ? t.description : "" });
  }
  const first = templates[0];
  if (first === undefined) return FALLBACK;
  const wanted = typeof rec.default === "string" ? rec.default : first.id;
  const defaultId = templates.some((t) => t.id === wanted) ? wanted : first.id;
  return { templates, defaultId };
}

/** The title of a template id, from the offered list or the known ids. */
export function templateTitle(id: string, offered: readonly TemplateInfo[]): string {
  return offered.find((t) => t.id === id)?.title ?? TEMPLATES.find((t) => t.id === id)?.title ?? id;
}

/** The templates the agent offers (the fallback until it answered, or if it cannot). */
export function useTemplates(): TemplateList {
  const [list, setList] = useState<TemplateList>(FALLBACK);
  useEffect(() => {
    let live = true;
    request<unknown>("GET", "/api/templates")
      .then((answer) => live && setList(templateList(answer)))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, []);
  return list;
}
