/**
 * The benchmark's one table, as aligned text for the terminal and as markdown for
 * bench/results/perf.md and docs/performance.md, with each row's ratios to the raw row (same
 * docker flags as amp's worker, same connections and pacing); and writing the result files.
 */
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {perfChart} from './perf-chart.js'
import {describeLoad, type PerfReport, type Row} from './perf-run.js'

export const COLUMNS = ['row', 'connections', 'p50', 'p99', 'calls/s', 'p50 vs raw', 'calls/s vs raw', 'errors'] as const

/** The raw row measured under the same load as `row`. */
function rawOf(report: PerfReport, row: Row): Row | undefined {
  return report.rows.find((r) => r.kind === 'raw' && r.connections === row.connections && r.rate === row.rate)
}

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`
const ratio = (value: number | undefined, base: number | undefined) =>
  value === undefined || !base ? '-' : `${(value / base).toFixed(2)}x`

/** The cells of each row, in COLUMNS order. */
export function tableCells(report: PerfReport): string[][] {
  return report.rows.map((row) => {
    const load = describeLoad(row).replace(/ connections?/, '')
    if (row.skipped || row.p50Ms === undefined) return [row.name, load, `n/a (${row.skipped ?? 'not run'})`, '', '', '', '', '']
    const raw = rawOf(report, row)
    return [
      row.name,
      load,
      ms(row.p50Ms),
      ms(row.p99Ms ?? 0),
      (row.callsPerSecond ?? 0).toFixed(1),
      ratio(row.p50Ms, raw?.p50Ms),
      ratio(row.callsPerSecond, raw?.callsPerSecond),
      `${row.errors ?? 0}/${row.calls ?? 0}`,
    ]
  })
}

/** Every error sample of the run, prefixed with its row. */
export function errorLines(report: PerfReport): string[] {
  return report.rows.flatMap((row) => (row.samples ?? []).map((sample) => `${row.name} (${describeLoad(row)}): ${sample}`))
}

export function formatText(report: PerfReport): string {
  const cells = [[...COLUMNS], ...tableCells(report)]
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i].length)))
  const lines = cells.map((line) => line.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd())
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  return [...lines, ...footer(report), ...errorLines(report).map((line) => `! ${line}`)].join('\n')
}

export function formatMarkdown(report: PerfReport): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`
  return [
    line(COLUMNS),
    line(COLUMNS.map(() => '---')),
    ...tableCells(report).map(line),
    '',
    ...footer(report).map((text) => `${text}  `),
    ...errorLines(report).map((text) => `- error: ${text.replaceAll('|', '\\|')}`),
  ].join('\n')
}

function footer(report: PerfReport): string[] {
  const {machine: m, options: o} = report
  return [
    `${report.date}; ${m.cores} cores (${m.cpu}), docker ${m.docker}, node ${m.node}; image ${report.image}`,
    `${o.calls} calls per row (${o.fastCalls} in the closed-loop rows without a container start per call) after ${o.warmup} not counted; worker concurrency ${o.concurrency}; prestart ${o.prestart}; containers left: ${report.containersLeft}`,
    `raw:   ${report.commands.raw}`,
    `plain: ${report.commands.plain}`,
  ]
}

/** Writes the markdown table and the SVG chart, creating their directories. */
export function writeResults(report: PerfReport, files: {markdown: string; svg: string}): void {
  for (const file of Object.values(files)) mkdirSync(path.dirname(file), {recursive: true})
  writeFileSync(files.markdown, `# amp performance benchmark (npm run bench)\n\n${formatMarkdown(report)}\n`)
  writeFileSync(files.svg, perfChart(report))
}

/** True when any call was answered wrong or not at all, or a container was left. */
export function perfFailed(report: PerfReport): boolean {
  return report.containersLeft > 0 || report.rows.some((row) => !row.skipped && (row.errors ?? 0) > 0)
}
