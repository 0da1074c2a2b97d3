import { useState } from 'react'
import type { Route } from './+types/home'

export function meta(_: Route.MetaArgs) {
  return [{ title: 'Amicable app' }]
}

export default function Home() {
  const [count, setCount] = useState(0)
  return (
    <main style={{ display: 'grid', placeItems: 'center', minHeight: '100vh', gap: '1rem' }}>
      <h1>Your app starts here</h1>
      <p>Describe what you want to build in the chat. This page updates live as the code changes.</p>
      <button type="button" onClick={() => setCount((c) => c + 1)}>
        Clicked {count} {count === 1 ? 'time' : 'times'}
      </button>
    </main>
  )
}
