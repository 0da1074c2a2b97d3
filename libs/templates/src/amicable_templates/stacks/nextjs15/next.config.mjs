// Everything environment-specific comes from the sandbox's environment (see AGENTS.md).
// The preview domain is allowed for dev-only resources (HMR WebSocket, /_next/*): the same
// comma list Vite reads; a leading dot means every subdomain.
const previewHosts = (process.env.__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS || '')
  .split(',')
  .map((h) => h.trim())
  .filter(Boolean)
  .flatMap((h) => (h.startsWith('.') ? [`*${h}`, `**${h}`] : [h]))

/** @type {import('next').NextConfig} */
const nextConfig = {
  allowedDevOrigins: previewHosts,
  devIndicators: false,
}

export default nextConfig
