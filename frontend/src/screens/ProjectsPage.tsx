/** The projects page: create a project with a first prompt, list, open, rename, delete. */
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { ApiError, projectsApi, type ProjectSummary } from "../api/http";
import { navigate } from "../router";
import { templateTitle, useTemplates } from "../templates";
import type { Theme } from "../theme";
import { Logo, ThemeToggle } from "../components/ThemeToggle";
import { UserMenu } from "../components/UserMenu";
import { ConfirmDialog } from "../components/Dialog";
import { failureSentence } from "../state/errors";
import { canEdit, isOwner, roleOf, sharedBadge } from "../state/roles";

function relativeTime(iso: string | undefined): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

function errorText(err: unknown): string {
  if (err instanceof ApiError && err.code === "invalid_template_id") return "The agent does not support this template.";
  return failureSentence(err);
}

interface Props {
  theme: Theme;
  onToggleTheme: () => void;
}

export function ProjectsPage({ theme, onToggleTheme }: Props) {
  const [projects, setProjects] = useState<ProjectSummary[] | undefined>();
  const [loadError, setLoadError] = useState<string | undefined>();
  const [name, setName] = useState("");
  const [prompt, setPrompt] = useState("");
  const offered = useTemplates();
  const [chosen, setTemplate] = useState<string | undefined>();
  // the agent's default until the person picks one it offers
  const template = chosen && offered.templates.some((t) => t.id === chosen) ? chosen : offered.defaultId;
  const [creating, setCreating] = useState(false);
  const [createError, setCreateError] = useState<string | undefined>();
  const [renaming, setRenaming] = useState<{ id: string; name: string } | undefined>();
  const [deleting, setDeleting] = useState<ProjectSummary | undefined>();

  const load = useCallback(() => {
    projectsApi
      .list()
      .then((list) => {
        const sorted = [...list].sort((a, b) => (b.updated_at ?? "").localeCompare(a.updated_at ?? ""));
        setProjects(sorted);
        setLoadError(undefined);
      })
      .catch((err: unknown) => setLoadError(errorText(err)));
  }, []);

  useEffect(() => {
    document.title = "Amicable";
    load();
  }, [load]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    if (creating) return;
    setCreating(true);
    setCreateError(undefined);
    try {
      const trimmed = prompt.trim();
      const project = await projectsApi.create({
        ...(name.trim() ? { name: name.trim() } : {}),
        ...(trimmed ? { prompt: trimmed } : {}),
        template_id: template,
      });
      navigate(`/p/${encodeURIComponent(project.slug)}`, {
        initialPrompt: trimmed,
        project_id: project.project_id,
      });
    } catch (err) {
      setCreateError(errorText(err));
      setCreating(false);
    }
  };

  const saveRename = async (event: FormEvent) => {
    event.preventDefault();
    if (!renaming || !renaming.name.trim()) return;
    try {
      const res = await projectsApi.rename(renaming.id, renaming.name.trim());
      setProjects((list) =>
        list?.map((p) => (p.project_id === res.project_id ? { ...p, name: res.name, slug: res.slug } : p)),
      );
      setRenaming(undefined);
    } catch (err) {
      setLoadError(errorText(err));
    }
  };

  const confirmDelete = async () => {
    const target = deleting;
    setDeleting(undefined);
    if (!target) return;
    setProjects((list) => list?.filter((p) => p.project_id !== target.project_id));
    try {
      await projectsApi.remove(target.project_id);
    } catch (err) {
      setLoadError(errorText(err));
      load();
    }
  };

  return (
    <div className="projects-page">
      <header className="topbar">
        <Logo />
        <div className="topbar-right">
          <ThemeToggle theme={theme} onToggle={onToggleTheme} />
          <UserMenu />
        </div>
      </header>
      <main className="projects-main">
        <section className="hero">
          <h1>What do you want to build?</h1>
          <p className="muted">Describe an app. The agent writes the code in a sandbox while you watch the preview.</p>
          <form className="create-form card" onSubmit={create} data-testid="create-form">
            <textarea
              data-testid="new-project-prompt"
              className="prompt-input"
              placeholder="A habit tracker with a weekly streak chart and dark mode…"
              value={prompt}
              rows={4}
              onChange={(e) => setPrompt(e.target.value)}
              onKeyDown={(e) => {
                // As in the chat: Enter sends, Shift+Enter starts a new line.
                if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
                  e.preventDefault();
                  void create(e);
                }
              }}
              aria-label="First prompt"
            />
            <div className="create-row">
              <input
                data-testid="new-project-name"
                className="text-input"
                placeholder="Name (optional)"
                value={name}
                onChange={(e) => setName(e.target.value)}
                aria-label="Project name"
              />
              <select
                data-testid="new-project-template"
                className="text-input"
                value={template}
                onChange={(e) => setTemplate(e.target.value)}
                aria-label="Template"
              >
                {offered.templates.map((t) => (
                  <option key={t.id} value={t.id}>
                    {t.title} — {t.description}
                  </option>
                ))}
              </select>
              <button type="submit" className="btn primary" data-testid="new-project" disabled={creating}>
                {creating ? "Creating…" : "Create project"}
              </button>
            </div>
            {createError && (
              <p className="form-error" role="alert">
                {createError}
              </p>
            )}
          </form>
        </section>
        <section className="project-list-section">
          <h2>Your projects</h2>
          {loadError && (
            <p className="form-error" role="alert">
              Could not load projects: {loadError}
            </p>
          )}
          {projects === undefined && !loadError && <p className="muted">Loading…</p>}
          {projects?.length === 0 && <p className="muted">No projects yet. Create your first one above.</p>}
          <ul className="project-list" data-testid="project-list">
            {projects?.map((p) => {
              const role = roleOf(p);
              const badge = sharedBadge(role);
              return (
                <li key={p.project_id} className="project-item card" data-testid="project-item">
                  {renaming?.id === p.project_id ? (
                    <form className="rename-form" onSubmit={saveRename}>
                      <input
                        autoFocus
                        className="text-input"
                        data-testid="rename-input"
                        value={renaming.name}
                        onChange={(e) => setRenaming({ id: p.project_id, name: e.target.value })}
                        onKeyDown={(e) => e.key === "Escape" && setRenaming(undefined)}
                        aria-label="New name"
                      />
                      <button className="btn primary small" type="submit" data-testid="rename-save">
                        Save
                      </button>
                      <button className="btn small" type="button" onClick={() => setRenaming(undefined)}>
                        Cancel
                      </button>
                    </form>
                  ) : (
                    <>
                      <a
                        className="project-open"
                        href={`/p/${encodeURIComponent(p.slug)}`}
                        data-testid="project-open"
                        onClick={(e) => {
                          e.preventDefault();
                          navigate(`/p/${encodeURIComponent(p.slug)}`);
                        }}
                      >
                        <span className="project-name">{p.name}</span>
                        <span className="project-meta">
                          /{p.slug} · {templateTitle(p.template_id, offered.templates)}
                          {p.updated_at ? ` · ${relativeTime(p.updated_at)}` : ""}
                        </span>
                      </a>
                      {badge && (
                        <span className="badge" data-testid="project-role" title="Someone else owns this project">
                          {badge}
                        </span>
                      )}
                      <div className="project-actions">
                        {canEdit(role) && (
                          <button
                            className="btn ghost small"
                            data-testid="project-rename"
                            onClick={() => setRenaming({ id: p.project_id, name: p.name })}
                          >
                            Rename
                          </button>
                        )}
                        {isOwner(role) && (
                          <button
                            className="btn ghost small danger"
                            data-testid="project-delete"
                            onClick={() => setDeleting(p)}
                          >
                            Delete
                          </button>
                        )}
                      </div>
                    </>
                  )}
                </li>
              );
            })}
          </ul>
        </section>
      </main>
      {deleting && (
        <ConfirmDialog
          title={`Delete “${deleting.name}”?`}
          body="This deletes the project, its sandbox and its files. It cannot be undone."
          confirmLabel="Delete project"
          danger
          onConfirm={() => void confirmDelete()}
          onCancel={() => setDeleting(undefined)}
        />
      )}
    </div>
  );
}
