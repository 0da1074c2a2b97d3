import { Hono } from 'hono'
import { page } from './page.ts'

// The API. Add routes here (or in modules under src/routes/ mounted with app.route()).
export const app = new Hono()

app.get('/', (c) => c.html(page('Your API starts here')))

app.get('/api/hello', (c) => c.json({ message: 'Hello from Hono' }))

app.get('/api/health', (c) => c.json({ ok: true }))
