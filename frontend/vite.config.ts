import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the agent (WebSocket + JSON API + /config.js) so that the editor can
// keep using same-origin URLs; AMICABLE_AGENT_URL points it elsewhere than localhost:8000.
const agent = process.env.AMICABLE_AGENT_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", sourcemap: true, chunkSizeWarningLimit: 1500 },
  server: {
    proxy: {
      "/api": agent,
      "/config.js": agent,
      "/ws": { target: agent.replace(/^http/, "ws"), ws: true },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts", "src/**/*.test.tsx"] },
});
