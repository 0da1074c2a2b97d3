/** Dark/light theme, remembered in localStorage (default: the system preference, else dark). */
import { useCallback, useEffect, useState } from "react";

export type Theme = "dark" | "light";

function initialTheme(): Theme {
  const saved = window.localStorage.getItem("amicable-theme");
  if (saved === "dark" || saved === "light") return saved;
  return window.matchMedia?.("(prefers-color-scheme: light)").matches ? "light" : "dark";
}

export function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(initialTheme);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  const toggle = useCallback(() => {
    setTheme((t) => {
      const next = t === "dark" ? "light" : "dark";
      window.localStorage.setItem("amicable-theme", next);
      return next;
    });
  }, []);
  return [theme, toggle];
}
