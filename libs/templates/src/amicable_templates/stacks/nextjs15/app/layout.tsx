import type { Metadata } from 'next'
import type { ReactNode } from 'react'
import './globals.css'

export const metadata: Metadata = { title: 'Amicable app' }

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <head>
        {/* Reports runtime errors to the Amicable editor so the agent can fix them. Keep it. */}
        {/* eslint-disable-next-line @next/next/no-sync-scripts */}
        <script src="/amicable-runtime.js" />
      </head>
      <body>{children}</body>
    </html>
  )
}
