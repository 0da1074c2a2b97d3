import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vite'
import { stampSource } from './amicable-source.ts'

// Everything environment-specific comes from the sandbox's environment, so the same project
// works in the local embedded mode and in Kubernetes behind the preview router.
const env = process.env

const host = env.AMICABLE_PREVIEW_HOST || '0.0.0.0'
const port = Number(env.AMICABLE_PREVIEW_PORT || 3000)

// Comma list; a leading dot allows every subdomain (".preview.example.com"). Vite also reads
// this variable natively; listing it here keeps it working if that ever changes.
const allowedHosts = (env.__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS || '')
  .split(',')
  .map((h) => h.trim())
  .filter(Boolean)

// Behind the preview router the browser reaches HMR on the router's port/scheme
// (443 + wss in Kubernetes, the router's port + ws locally), not on the dev server's port.
const hmrClientPort = env.AMICABLE_HMR_CLIENT_PORT ? Number(env.AMICABLE_HMR_CLIENT_PORT) : undefined
const hmrProtocol =
  env.AMICABLE_HMR_PROTOCOL === 'wss' || env.AMICABLE_HMR_PROTOCOL === 'ws'
    ? env.AMICABLE_HMR_PROTOCOL
    : undefined

export default defineConfig(({ command }) => ({
  // stampSource: dev only (never in `vite build`); lets the editor's Select mode name file:line.
  plugins: [
    vue({
      template: {
        compilerOptions: { nodeTransforms: command === 'serve' ? [stampSource(process.cwd())] : [] },
      },
    }),
  ],
  server: {
    host,
    port,
    strictPort: true,
    allowedHosts,
    hmr: { clientPort: hmrClientPort, protocol: hmrProtocol },
  },
}))
