import { useState } from "react";
import { fetchMe } from "./api/auth";
import { editorConfig } from "./config";
import { useRoute } from "./router";
import { useTheme, type Theme } from "./theme";
import { AuthStore } from "./state/auth";
import { AuthGate } from "./components/AuthGate";
import { ProjectsPage } from "./screens/ProjectsPage";
import { EditorPage } from "./screens/EditorPage";

/** The editor application: behind the sign-in gate, the projects page or one project's editor. */
export function App({ store }: { store?: AuthStore }) {
  const [auth] = useState(() => store ?? new AuthStore(fetchMe, editorConfig().authMode));
  // The theme applies to the sign-in screen too.
  const [theme, toggleTheme] = useTheme();
  return (
    <AuthGate store={auth}>
      <Screens theme={theme} onToggleTheme={toggleTheme} />
    </AuthGate>
  );
}

function Screens({ theme, onToggleTheme }: { theme: Theme; onToggleTheme: () => void }) {
  const route = useRoute();
  if (route.name === "editor") {
    return <EditorPage key={route.slug} slug={route.slug} theme={theme} onToggleTheme={onToggleTheme} />;
  }
  return <ProjectsPage theme={theme} onToggleTheme={onToggleTheme} />;
}
