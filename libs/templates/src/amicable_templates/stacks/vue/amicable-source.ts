/**
 * Amicable's dev-only source stamp for Vue templates: `data-amicable-source="src/App.vue:9"`
 * (file:line) on the HTML elements written in the project's own .vue files, so the editor's
 * "Select" mode can tell the agent where a picked element is written.
 *
 * It is a node transform of Vue's template compiler, given to `@vitejs/plugin-vue` in
 * vite.config.ts only when serving: production builds carry no such attribute. Components
 * (`<MyCard>`, `<RouterLink>`) and `<template>`/`<slot>` are left alone: only plain elements
 * get the attribute. Keep this file and its use in vite.config.ts; the editor works without
 * it, only less precisely.
 */
import path from 'node:path'

export const SOURCE_ATTRIBUTE = 'data-amicable-source'

// The compiler's node kinds (@vue/compiler-core's NodeTypes / ElementTypes), as numbers so
// this file needs no import from the compiler itself.
const ELEMENT = 1
const PLAIN_ELEMENT = 0
const ATTRIBUTE = 6
const TEXT = 2

type Location = { start: { line: number; column: number; offset: number }; end: unknown; source: string }
type Prop = { type: number; name: string }
type ElementNode = { type: number; tagType?: number; loc: Location; props: Prop[] }
type TransformContext = { filename: string }

/** The node transform: stamps plain elements of files under `root` with file:line. */
export function stampSource(root: string) {
  return (node: unknown, context: TransformContext): void => {
    const element = node as ElementNode
    if (element.type !== ELEMENT || element.tagType !== PLAIN_ELEMENT) return
    const rel = path.relative(root, context.filename.split('?')[0])
    if (!rel || rel.startsWith('..') || path.isAbsolute(rel) || /["<>&]/.test(rel)) return
    if (rel.split(path.sep).includes('node_modules')) return
    if (element.props.some((p) => p.type === ATTRIBUTE && p.name === SOURCE_ATTRIBUTE)) return
    const file = rel.split(path.sep).join('/')
    const loc = element.loc
    const attribute = {
      type: ATTRIBUTE,
      name: SOURCE_ATTRIBUTE,
      nameLoc: loc,
      value: { type: TEXT, content: `${file}:${loc.start.line}`, loc },
      loc,
    }
    element.props.push(attribute as unknown as Prop)
  }
}
