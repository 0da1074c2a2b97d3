// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import { allTestId, byTestId, change, cleanup, flush, press, render, stubFetch, submit } from "../test/dom";
import { ProjectsPage } from "./ProjectsPage";

const project = (id: string, role?: string) => ({
  project_id: id,
  name: id,
  slug: id,
  template_id: "vite",
  updated_at: `2026-01-0${id.length}T00:00:00Z`,
  ...(role ? { role } : {}),
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("projects list roles", () => {
  it("badges projects someone else owns and offers only what the role allows", async () => {
    stubFetch({
      "GET /api/projects": {
        body: { projects: [project("mine", "owner"), project("shared-edit", "editor"), project("shared-view", "viewer"), project("old")] },
      },
    });
    render(<ProjectsPage theme="dark" onToggleTheme={() => undefined} />);
    await flush();
    const items = Object.fromEntries(
      allTestId("project-item").map((li) => [
        li.querySelector(".project-name")?.textContent,
        {
          badge: li.querySelector('[data-testid="project-role"]')?.textContent ?? null,
          rename: li.querySelector('[data-testid="project-rename"]') !== null,
          remove: li.querySelector('[data-testid="project-delete"]') !== null,
        },
      ]),
    );
    expect(items).toEqual({
      mine: { badge: null, rename: true, remove: true },
      "shared-edit": { badge: "Shared · Can edit", rename: true, remove: false },
      "shared-view": { badge: "Shared · Can view", rename: false, remove: false },
      old: { badge: null, rename: true, remove: true },
    });
  });

  it("says a quota error in plain words with the server's detail", async () => {
    stubFetch({
      "GET /api/projects": { body: { projects: [] } },
      "POST /api/projects": { status: 429, body: { error: "quota_exceeded", detail: "You can have at most 100 projects." } },
    });
    render(<ProjectsPage theme="dark" onToggleTheme={() => undefined} />);
    await flush();
    const form = document.querySelector<HTMLFormElement>('[data-testid="create-form"]');
    submit(form as HTMLFormElement);
    await flush();
    expect(document.querySelector('[data-testid="create-form"] [role="alert"]')?.textContent).toBe(
      "You have reached a limit: You can have at most 100 projects.",
    );
  });

  it("sends the first prompt on Enter, like the chat (Shift+Enter is a new line)", async () => {
    const calls = stubFetch({
      "GET /api/projects": { body: { projects: [] } },
      "POST /api/projects": { status: 429, body: { error: "quota_exceeded", detail: "stop here" } },
    });
    render(<ProjectsPage theme="dark" onToggleTheme={() => undefined} />);
    await flush();
    const prompt = byTestId<HTMLTextAreaElement>("new-project-prompt");
    change(prompt, "A habit tracker");
    press("Enter", prompt, true);
    await flush();
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(0);
    press("Enter", prompt);
    await flush();
    const posts = calls.filter((c) => c.method === "POST");
    expect(posts).toHaveLength(1);
    expect(posts[0]?.body).toMatchObject({ prompt: "A habit tracker" });
  });
});
