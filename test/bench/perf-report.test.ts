import {expect} from 'chai'

import {perfChart} from '../../bench/perf-chart.js'
import {formatMarkdown, formatText, perfFailed, tableCells} from '../../bench/perf-report.js'
import {DEFAULT_PERF_OPTIONS, type PerfReport, type Row, ROW_NAMES} from '../../bench/perf-run.js'

function row(kind: Row['kind'], connections: number, rate: number | undefined, p50Ms: number, callsPerSecond: number, errors = 0): Row {
  return {kind, name: ROW_NAMES[kind], connections, rate, calls: 40, ok: 40 - errors, errors, samples: errors ? ['500: boom <x>'] : [], p50Ms, p99Ms: p50Ms * 2, durationMs: 1, callsPerSecond}
}

function report(rows: Row[], containersLeft = 0): PerfReport {
  return {
    date: '2026-11-28T06:30:00.000Z',
    machine: {cores: 2, cpu: 'Test CPU', docker: '26.1.5', node: 'v20.20.2'},
    image: 'amp-test/upper:1',
    commands: {raw: 'docker run --interactive --rm ... amp-test/upper:1', plain: 'docker run -i --rm --network none amp-test/upper:1'},
    rows,
    containersLeft,
    options: {...DEFAULT_PERF_OPTIONS},
  }
}

const full = report([
  row('raw', 1, 2, 280, 1.9),
  row('plain', 1, 2, 250, 1.9),
  row('amp', 1, 2, 294, 1.8),
  row('warm', 1, 2, 120, 2),
  {kind: 'prestart', name: ROW_NAMES.prestart, connections: 1, rate: 2, skipped: 'no prestart support'},
  row('raw', 4, undefined, 560, 6.7),
  row('plain', 4, undefined, 500, 7),
  row('amp', 4, undefined, 600, 6.2, 1),
  row('warm', 4, undefined, 300, 12),
  row('prestart', 4, undefined, 280, 13.4),
  row('runnerPrestart', 1, 2, 9.5, 2),
  row('runnerAlone', 1, 2, 1.2, 2),
  row('reuse', 1, 2, 3.4, 2),
  row('pipeline', 1, 2, 2.1, 2),
  row('runnerPrestart', 4, undefined, 270, 14),
  row('runnerAlone', 4, undefined, 2.5, 1500),
  row('reuse', 4, undefined, 4.1, 900),
  row('pipeline', 4, undefined, 1.9, 2000),
])

describe('benchmark report (bench/perf-report.ts, perf-chart.ts)', () => {
  it('gives each row its ratios to the raw row of the same load', () => {
    const cells = tableCells(full)
    expect(cells[0]).to.deep.equal(['raw docker run -i --rm', '1, 2 calls/s', '280 ms', '560 ms', '1.9', '1.00x', '1.00x', '0/40'])
    expect(cells[2].slice(5)).to.deep.equal(['1.05x', '0.95x', '0/40'])
    expect(cells[7].slice(5)).to.deep.equal(['1.07x', '0.93x', '1/40'])
    expect(cells[3].slice(5, 7)).to.deep.equal(['0.43x', '1.05x'])
    expect(cells[9].slice(1, 7)).to.deep.equal(['4, closed loop', '280 ms', '560 ms', '13.4', '0.50x', '2.00x'])
  })

  it('shows a row that could not run as n/a, with why', () => {
    expect(tableCells(full)[4][2]).to.equal('n/a (no prestart support)')
    expect(formatText(full)).to.include('n/a (no prestart support)')
  })

  it('prints one table with every row, the machine, the commands and the errors', () => {
    const text = formatText(full)
    for (const name of Object.values(ROW_NAMES)) expect(text).to.include(name)
    expect(text).to.include('2 cores').and.include('docker 26.1.5')
    expect(text).to.include('plain: docker run -i --rm --network none amp-test/upper:1')
    expect(text).to.include('! amp (4 connections, closed loop): 500: boom <x>')
    const md = formatMarkdown(full).split('\n')
    expect(md[0]).to.equal('| row | connections | p50 | p99 | calls/s | p50 vs raw | calls/s vs raw | errors |')
    expect(md.filter((line) => line.startsWith('| '))).to.have.length(2 + 18)
  })

  it('fails the run on any error or container left, not on a skipped row', () => {
    expect(perfFailed(full)).to.equal(true)
    const clean = report(full.rows.filter((r) => !r.errors))
    expect(perfFailed(clean)).to.equal(false)
    expect(perfFailed(report(clean.rows, 1))).to.equal(true)
  })

  it('draws a bar per row and panel, n/a for a skipped row, with text escaped', () => {
    const svg = perfChart({...full, image: 'a<b>&c'})
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).to.equal(true)
    expect(svg.trimEnd().endsWith('</svg>')).to.equal(true)
    // Two panels (p50, calls/s), a bar for each of the 17 rows that ran.
    expect(svg.match(/<rect x=/g)).to.have.length(2 * 17)
    // Log scales: a 1.2 ms warm row still shows next to a 600 ms fresh one, and a longer time is a longer bar.
    const widths = [...svg.matchAll(/<rect x="\d+" y="\d+" width="([\d.]+)"/g)].map((m) => Number(m[1]))
    const p50Widths = widths.slice(0, 17)
    expect(Math.min(...p50Widths)).to.be.greaterThan(20)
    expect(p50Widths[0]).to.be.greaterThan(p50Widths[12])
    expect(svg).to.include('n/a (no prestart support)')
    expect(svg).to.include('a&#60;b&#62;&#38;c').and.not.include('a<b>')
  })
})
