import { serve } from '@hono/node-server'
import { app } from './app.ts'
import { mountReload } from './reload.ts'

// The sandbox sets the address; Hono answers any Host header, so the preview domain needs no
// allow-list. Do not change how host and port are chosen: the preview depends on them.
const hostname = process.env.AMICABLE_PREVIEW_HOST || '0.0.0.0'
const port = Number(process.env.AMICABLE_PREVIEW_PORT || process.env.PORT || 3000)

mountReload(app)
serve({ fetch: app.fetch, hostname, port }, (info) => {
  console.log(`Hono listening on http://${info.address}:${info.port}`)
})
