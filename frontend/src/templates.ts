/** Project templates (upstream §8.3); the agent rejects ids it does not support. */
export interface TemplateInfo {
  id: string;
  title: string;
  description: string;
}

export const TEMPLATES: readonly TemplateInfo[] = [
  { id: "vite", title: "Single-Page App", description: "React + Vite + TypeScript" },
  { id: "nextjs15", title: "Full-Stack Web App", description: "Next.js 15" },
  { id: "remix", title: "Multi-Page App", description: "React Router" },
  { id: "sveltekit", title: "SvelteKit App", description: "SvelteKit" },
  { id: "fastapi", title: "Python API", description: "FastAPI" },
  { id: "hono", title: "Lightweight API", description: "Hono" },
];

export const DEFAULT_TEMPLATE = "vite";
