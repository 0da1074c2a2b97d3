/** The editor of one project: chat on the right, preview or code on the left. */
import { lazy, Suspense, useCallback, useEffect, useRef, useState } from "react";
import { ApiError, downloadUrl, projectsApi, type ProjectSummary } from "../api/http";
import type { ClientDataMap, ContentBlock, UiContext } from "../protocol/messages";
import { useSession } from "../state/useSession";
import { useSignOutOnPolicyClose } from "../state/useAuth";
import type { Theme } from "../theme";
import { ChatPanel } from "../components/ChatPanel";
import { DEVICE_SIZES, PreviewPane, type Device } from "../components/PreviewPane";
import { Logo, ThemeToggle } from "../components/ThemeToggle";
import { UserMenu } from "../components/UserMenu";
import { DownloadIcon, HistoryIcon } from "../components/Icons";
import { HistoryPanel } from "../components/HistoryPanel";
import { ShareButton } from "../components/ShareButton";
import { canEdit, roleOf } from "../state/roles";
import { DatabasePane } from "../components/DatabasePane";
import { tabProps } from "../components/roving";

interface Props {
  slug: string;
  theme: Theme;
  onToggleTheme: () => void;
}

type View = "preview" | "code" | "database";
/** On phones one pane at a time: the chat, or the main view (preview, code or database). */
type PhonePane = "chat" | View;
const VIEW_LABELS: Record<View, string> = { preview: "Preview", code: "Code", database: "Database" };

function readInitialPrompt(): string | undefined {
  const state: unknown = window.history.state;
  if (typeof state === "object" && state !== null && "initialPrompt" in state) {
    const value = (state as { initialPrompt?: unknown }).initialPrompt;
    return typeof value === "string" && value.trim() !== "" ? value : undefined;
  }
  return undefined;
}

// CodeMirror is most of the bundle: load it with the first visit of the Code tab.
const CodePane = lazy(() => import("../components/CodePane").then((m) => ({ default: m.CodePane })));

let keyCounter = 0;
const localKey = () => `local-${Date.now()}-${keyCounter++}`;

export function EditorPage({ slug, theme, onToggleTheme }: Props) {
  const [project, setProject] = useState<ProjectSummary | undefined>();
  const [loadError, setLoadError] = useState<string | undefined>();
  const [view, setViewState] = useState<View>("preview");
  const [codeVisited, setCodeVisited] = useState(false);
  const setView = (v: View) => {
    if (v === "code") setCodeVisited(true);
    setViewState(v);
  };
  const [phoneChat, setPhoneChat] = useState(true);
  const phonePane: PhonePane = phoneChat ? "chat" : view;
  const setPhonePane = (p: PhonePane) => {
    setPhoneChat(p === "chat");
    if (p !== "chat") setView(p);
  };
  const [device, setDevice] = useState<Device>("desktop");
  const [previewPath, setPreviewPath] = useState("/");
  const [chatWidth, setChatWidth] = useState(() => Number(window.localStorage.getItem("amicable-chat-width")) || 440);
  const session = useSession(project?.project_id);
  const { state, send, dispatch } = session;
  // The main view's tabs: the database only for a project that has one.
  const views: View[] = state.init?.db ? ["preview", "code", "database"] : ["preview", "code"];
  const phonePanes: PhonePane[] = ["chat", ...views];
  useSignOutOnPolicyClose(session.connection);
  const initialPromptSent = useRef(false);
  const [historyOpen, setHistoryOpen] = useState(false);
  const closeHistory = useCallback(() => setHistoryOpen(false), []);
  const role = project ? roleOf(project) : undefined;
  // A viewer, or someone the agent just answered `read_only` (their access changed meanwhile).
  const readOnly =
    (role !== undefined && !canEdit(role)) || state.items.some((it) => it.kind === "error" && it.code === "read_only");
  const restoreBlocked = readOnly
    ? "You can view the history. Ask the owner for edit access to restore a checkpoint."
    : state.hitl
      ? "Approve or reject the pending action first."
      : state.busy
        ? "The agent is working; restore once its turn has finished."
        : undefined;

  useEffect(() => {
    projectsApi
      .bySlug(slug)
      .then((p) => {
        setProject(p);
        document.title = `${p.name} · Amicable`;
      })
      .catch((err: unknown) =>
        setLoadError(err instanceof ApiError && err.status === 404 ? "Project not found" : String(err)),
      );
  }, [slug]);

  const sendPrompt = useCallback(
    (text: string, blocks: ContentBlock[]) => {
      const ui: UiContext = { active_view: view, preview_path: previewPath, device_type: device };
      const size = DEVICE_SIZES[device];
      if (size.width.endsWith("px")) {
        ui.viewport_width = parseInt(size.width, 10);
        ui.viewport_height = parseInt(size.height, 10);
      }
      const data: ClientDataMap["user"] =
        blocks.length > 0 ? { text, content_blocks: blocks, ui_context: ui } : { text, ui_context: ui };
      if (state.model && (state.init?.models ?? []).length > 0) data.model = state.model;
      // The frame's id becomes the turn's id: its queue entry and bubble are this one.
      const key = localKey();
      if (!send("user", data, key)) return false;
      dispatch({ type: "local/user", key, text, blocks });
      return true;
    },
    [send, dispatch, view, previewPath, device, state.model, state.init?.models],
  );

  // The first prompt from the projects page is sent once the new project's sandbox exists.
  useEffect(() => {
    if (!state.init || initialPromptSent.current) return;
    initialPromptSent.current = true;
    const prompt = readInitialPrompt();
    if (prompt && !readOnly && !state.init.exists && state.items.length === 0) {
      sendPrompt(prompt, []);
      window.history.replaceState(null, "");
    }
  }, [state.init, state.items.length, sendPrompt, readOnly]);

  const startResize = (event: React.PointerEvent) => {
    event.preventDefault();
    const startX = event.clientX;
    const startWidth = chatWidth;
    const move = (e: PointerEvent) => {
      const w = Math.min(Math.max(340, startWidth - (e.clientX - startX)), window.innerWidth - 360);
      setChatWidth(w);
      window.localStorage.setItem("amicable-chat-width", String(w));
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      document.body.classList.remove("resizing");
    };
    document.body.classList.add("resizing");
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  };

  if (loadError) {
    return (
      <div className="center-page">
        <div className="card notice-card">
          <h1>{loadError}</h1>
          <p className="muted">The project “{slug}” does not exist or you cannot open it.</p>
          <a className="btn primary" href="/">
            Back to projects
          </a>
        </div>
      </div>
    );
  }

  return (
    <div
      className={`editor-page phone-${phoneChat ? "chat" : "main"}`}
      style={{ "--chat-width": `${chatWidth}px` } as React.CSSProperties}
    >
      <header className="topbar">
        <Logo />
        <div className="project-title">
          <h1 className="project-name" data-testid="project-name">
            {state.init?.project.name ?? project?.name ?? slug}
          </h1>
          <span className="muted project-slug">/{state.init?.project.slug ?? slug}</span>
          {readOnly && (
            <span className="badge" data-testid="read-only-badge" title="Ask the owner for edit access to make changes">
              View only
            </span>
          )}
        </div>
        <nav className="view-tabs" role="tablist" aria-label="Main view">
          {views.map((v) => (
            <button
              key={v}
              className={view === v ? "tab active" : "tab"}
              data-testid={`tab-${v}`}
              {...tabProps("view", views, view, setView, v)}
            >
              {VIEW_LABELS[v]}
            </button>
          ))}
        </nav>
        <div className="topbar-right">
          {project && role && <ShareButton projectId={project.project_id} projectName={project.name} role={role} />}
          {project && (
            <button
              className="icon-btn"
              onClick={() => setHistoryOpen(true)}
              data-testid="history"
              title="History: checkpoints of the project's files"
              aria-label="History"
            >
              <HistoryIcon />
            </button>
          )}
          {project && (
            <a
              className="icon-btn"
              href={downloadUrl(project.project_id)}
              download
              data-testid="download"
              title="Download the project's files (.zip)"
              aria-label="Download the project's files"
            >
              <DownloadIcon />
            </a>
          )}
          <ThemeToggle theme={theme} onToggle={onToggleTheme} />
          <UserMenu />
        </div>
      </header>
      <nav className="phone-tabs" role="tablist" aria-label="Pane">
        {phonePanes.map((p) => (
          <button
            key={p}
            className={phonePane === p ? "tab active" : "tab"}
            data-testid={`phone-tab-${p}`}
            {...tabProps("phone", phonePanes, phonePane, setPhonePane, p)}
          >
            {p === "chat" ? "Chat" : VIEW_LABELS[p]}
          </button>
        ))}
      </nav>
      <div className="editor-body">
        <main className="main-view">
          <PreviewPane
            hidden={view !== "preview"}
            state={state}
            device={device}
            onDevice={setDevice}
            path={previewPath}
            onPath={setPreviewPath}
            // A viewer's preview does not report errors: the agent may start a turn to fix them.
            onRuntimeError={(error) => !readOnly && send("runtime_error", { error })}
            onFixError={readOnly ? undefined : (error) => send("runtime_error", { error, requested: true })}
          />
          {project && state.init && (codeVisited || view === "code") && (
            <Suspense fallback={<div className="pane-placeholder muted">Loading the code editor…</div>}>
              <CodePane
                hidden={view !== "code"}
                projectId={project.project_id}
                agentWrites={state.agentWrites}
                restoreWrites={state.restoreWrites}
                theme={theme}
                readOnly={readOnly}
              />
            </Suspense>
          )}
          {view === "code" && !state.init && <div className="pane-placeholder muted">Waiting for the sandbox…</div>}
          {project && state.init?.db && (
            <DatabasePane
              hidden={view !== "database"}
              projectId={project.project_id}
              readOnly={readOnly}
              version={state.historyVersion}
            />
          )}
        </main>
        <div className="divider" onPointerDown={startResize} role="separator" aria-orientation="vertical" />
        <ChatPanel session={session} onSend={sendPrompt} readOnly={readOnly} />
      </div>
      {project && historyOpen && (
        <HistoryPanel
          projectId={project.project_id}
          blockedReason={restoreBlocked}
          version={state.historyVersion}
          onClose={closeHistory}
        />
      )}
    </div>
  );
}
