import { html } from 'hono/html'
import { bootId } from './reload.ts'

// The HTML landing page of the API. It lists the routes and reloads itself when the dev
// server restarts after an edit (see reload.ts): the preview's live reload.
export function page(title: string) {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>${title}</title>
    <style>
      body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; color: #0f172a; }
      code { background: #f1f5f9; padding: 0.1rem 0.3rem; border-radius: 0.25rem; }
    </style>
    <script src="/__amicable/reload.js" data-boot="${bootId}"></script>
  </head>
  <body>
    <h1>${title}</h1>
    <p>A <a href="https://hono.dev">Hono</a> API on Node. Try <a href="/api/hello"><code>GET /api/hello</code></a>.</p>
  </body>
</html>`
}
