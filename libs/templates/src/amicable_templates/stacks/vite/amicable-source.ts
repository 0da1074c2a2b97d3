/**
 * Amicable's dev-only Vite plugin: stamps `data-amicable-source="src/App.tsx:12"` (file:line)
 * on the HTML elements written in the project's own .jsx/.tsx files, so the editor's "Select"
 * mode can tell the agent where a picked element is written.
 *
 * Dev only: `apply: 'serve'` keeps it out of `vite build`, so production bundles carry no such
 * attribute. Components (`<Card>`, `<motion.div>`) are left alone: only lowercase HTML tags
 * get the attribute, so no component receives a prop it does not expect. Files that do not
 * parse are passed through untouched (Vite reports their error as usual). Keep this file and
 * its line in vite.config.ts; the editor works without it, only less precisely.
 */
import path from 'node:path'
import { parseSync, type Plugin } from 'vite'

export const SOURCE_ATTRIBUTE = 'data-amicable-source'

type Node = { type?: unknown; start: number; end: number; [key: string]: unknown }

function walk(value: unknown, visit: (node: Node) => void): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, visit)
    return
  }
  if (value === null || typeof value !== 'object') return
  const node = value as Node
  if (typeof node.type === 'string') visit(node)
  for (const key of Object.keys(node)) if (key !== 'parent') walk(node[key], visit)
}

/** `code` with the attribute on every HTML element's opening tag (`file` names it). */
export function stampSource(code: string, file: string, lang: 'jsx' | 'tsx'): string {
  const parsed = parseSync(`x.${lang}`, code, { lang })
  if (parsed.errors.length > 0) return code
  const lineStarts = [0]
  for (let i = 0; i < code.length; i++) if (code[i] === '\n') lineStarts.push(i + 1)
  const lineOf = (offset: number) => {
    let lo = 0
    let hi = lineStarts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (lineStarts[mid] <= offset) lo = mid
      else hi = mid - 1
    }
    return lo + 1
  }
  const inserts: { at: number; text: string }[] = []
  walk(parsed.program, (node) => {
    if (node.type !== 'JSXOpeningElement') return
    const name = node.name as { type: string; name?: string; end: number }
    if (name.type !== 'JSXIdentifier' || !/^[a-z]/.test(name.name ?? '')) return
    const attributes = (node.attributes as { name?: { name?: string } }[]) ?? []
    if (attributes.some((a) => a.name?.name === SOURCE_ATTRIBUTE)) return
    inserts.push({ at: name.end, text: ` ${SOURCE_ATTRIBUTE}="${file}:${lineOf(node.start)}"` })
  })
  let out = code
  for (const { at, text } of inserts.sort((a, b) => b.at - a.at)) {
    out = out.slice(0, at) + text + out.slice(at)
  }
  return out
}

export default function amicableSource(): Plugin {
  let root = process.cwd()
  return {
    name: 'amicable-source',
    apply: 'serve',
    enforce: 'pre',
    configResolved(config) {
      root = config.root
    },
    transform(code, id) {
      const file = id.split('?')[0]
      const match = /\.([jt]sx)$/.exec(file)
      if (!match || file.includes('/node_modules/')) return null
      const rel = path.relative(root, file)
      if (rel.startsWith('..') || path.isAbsolute(rel) || /["<>&]/.test(rel)) return null
      const stamped = stampSource(code, rel.split(path.sep).join('/'), match[1] as 'jsx' | 'tsx')
      // Only attributes are added inside lines: line numbers stay right without a new map.
      return stamped === code ? null : { code: stamped, map: null }
    },
  }
}
