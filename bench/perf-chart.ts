/**
 * The benchmark as a small SVG bar chart (docs/performance.svg): one line per row, its p50 on the
 * left, its calls/s on the right, each bar scaled to the largest value of its panel. Plain SVG
 * text, no library: rects and text only, so any browser or GitHub shows it.
 */
import type {PerfReport, Row, RowKind} from './perf-run.js'

const COLORS: Record<RowKind, string> = {
  raw: '#7f8c8d',
  plain: '#bdc3c7',
  amp: '#2980b9',
  warm: '#95a5a6',
  prestart: '#27ae60',
  runnerPrestart: '#16a085',
  runnerAlone: '#d35400',
  reuse: '#c0392b',
  pipeline: '#8e44ad',
}
const SHORT: Record<RowKind, string> = {
  raw: 'docker run (amp flags)',
  plain: 'docker run (plain)',
  amp: 'amp',
  warm: 'pre-started docker run',
  prestart: 'amp prestart, no runner',
  runnerPrestart: 'amp runner prestart',
  runnerAlone: 'runner alone (warm)',
  reuse: 'amp warm',
  pipeline: 'amp pipeline alone',
}
const LINE = 26
const TOP = 56
const LABEL_W = 340
const PANEL_W = 280
const GAP = 90

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x}" y="${y}" ${attrs}>${escapeXml(content)}</text>`
}

export function perfChart(report: PerfReport): string {
  const rows = report.rows
  const width = LABEL_W + 2 * PANEL_W + GAP + 70
  const height = TOP + rows.length * LINE + 34
  // Both on log scales: the rows span three orders of magnitude (a fresh container, a warm call).
  const panels = [
    {title: 'p50 latency (ms, log scale, lower is better)', value: (i: number) => rows[i].p50Ms, format: (v: number) => `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`},
    {title: 'calls/s (log scale, higher is better)', value: (i: number) => rows[i].callsPerSecond, format: (v: number) => v.toFixed(1)},
  ]
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(10, 22, `amp vs docker run -i --rm: ${report.image}, ${report.machine.cores} cores, docker ${report.machine.docker}`, 'font-weight="bold"'),
  ]
  panels.forEach((panel, p) => {
    const x0 = LABEL_W + p * (PANEL_W + GAP)
    const values = rows.map((_, i) => panel.value(i)).filter((v): v is number => v !== undefined && v > 0)
    // A decade below the smallest value is the bar's zero, so the smallest still shows.
    const low = Math.log10(Math.min(1, ...values)) - 1
    const high = Math.max(low + 1e-9, Math.log10(Math.max(1e-9, ...values)))
    const scale = (v: number) => (Math.log10(Math.max(v, 10 ** low)) - low) / (high - low)
    out.push(text(x0, TOP - 12, panel.title, 'font-weight="bold"'))
    rows.forEach((row, i) => {
      const y = TOP + i * LINE
      const value = panel.value(i)
      if (value === undefined) {
        out.push(text(x0 + 4, y + 15, row.skipped ? `n/a (${row.skipped})` : 'n/a', 'fill="#888888"'))
        return
      }
      const w = Math.max(1, scale(value) * PANEL_W)
      out.push(`<rect x="${x0}" y="${y + 3}" width="${w.toFixed(1)}" height="${LINE - 8}" fill="${COLORS[row.kind]}"/>`)
      out.push(text(Math.round(x0 + w + 4), y + 16, panel.format(value)))
    })
  })
  rows.forEach((row, i) => out.push(text(10, TOP + i * LINE + 16, `${SHORT[row.kind]}, ${shortLoad(row)}`)))
  const calls = `${report.options.calls} calls per row, ${report.options.fastCalls} in the closed-loop rows without a container start per call`
  out.push(text(10, height - 12, `${report.date.slice(0, 16).replace('T', ' ')} UTC, ${calls}; npm run bench`, 'fill="#555555"'))
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function shortLoad(row: Row): string {
  return `${row.connections} conn, ${row.rate === undefined ? 'closed loop' : `${row.rate}/s`}`
}
