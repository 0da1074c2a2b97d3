import { useRoute } from "./router";
import { useTheme } from "./theme";
import { ProjectsPage } from "./screens/ProjectsPage";
import { EditorPage } from "./screens/EditorPage";

/** The editor application: projects page or the editor of one project. */
export function App() {
  const route = useRoute();
  const [theme, toggleTheme] = useTheme();
  if (route.name === "editor") {
    return <EditorPage key={route.slug} slug={route.slug} theme={theme} onToggleTheme={toggleTheme} />;
  }
  return <ProjectsPage theme={theme} onToggleTheme={toggleTheme} />;
}
