import { Counter } from './counter'

export default function Home() {
  return (
    <main style={{ display: 'grid', placeItems: 'center', minHeight: '100vh', gap: '1rem' }}>
      <h1>Your app starts here</h1>
      <p>Describe what you want to build in the chat. This page updates live as the code changes.</p>
      <Counter />
    </main>
  )
}
