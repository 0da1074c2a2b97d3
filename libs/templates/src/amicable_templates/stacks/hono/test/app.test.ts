import assert from 'node:assert/strict'
import { test } from 'node:test'
import { app } from '../src/app.ts'

test('GET /api/hello answers JSON', async () => {
  const res = await app.request('/api/hello')
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { message: 'Hello from Hono' })
})
