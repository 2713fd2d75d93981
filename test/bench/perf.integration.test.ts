import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {expect} from 'chai'

import {formatText, writeResults} from '../../bench/perf-report.js'
import {type PerfReport, ROW_NAMES, runPerf} from '../../bench/perf-run.js'

// The benchmark of bench/perf.ts at CI size: the same code, 4 calls per row. No timing is asserted
// (speed is what the benchmark reports, not what a test can hold on a shared machine): only that
// every row ran or said why not, every call was answered right, and the files were written.
describe('performance benchmark (bench/perf.ts at CI size)', function () {
  this.timeout(600_000)
  let report: PerfReport
  let dir: string

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'amp-perf-'))
    report = await runPerf({calls: 4, fastCalls: 40, warmup: 1, rate: 2, connections: 4})
    writeResults(report, {markdown: path.join(dir, 'perf.md'), svg: path.join(dir, 'perf.svg')})
  })
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('runs every row at 1 connection paced and at 4 connections closed loop', () => {
    const seen = report.rows.map((row) => `${row.kind} ${row.connections} ${row.rate ?? 'closed'}`)
    const kinds = ['raw', 'plain', 'amp', 'warm', 'prestart', 'runnerPrestart', 'runnerAlone', 'reuse', 'pipeline']
    expect(seen).to.deep.equal([...kinds.map((kind) => `${kind} 1 2`), ...kinds.map((kind) => `${kind} 4 closed`)])
  })

  it('answers every call of every row that ran, right, and leaves no container', () => {
    const table = formatText(report)
    for (const row of report.rows) {
      if (row.kind === 'prestart' && row.skipped) {
        expect(row.skipped, table).to.equal('no prestart support')
        continue
      }
      expect(row.skipped, table).to.equal(undefined)
      const calls = row.rate === undefined && ['runnerAlone', 'reuse', 'pipeline'].includes(row.kind) ? 40 : 4
      expect({row: row.name, ok: row.ok, errors: row.errors, samples: row.samples}, table).to.deep.equal({
        row: row.name,
        ok: calls,
        errors: 0,
        samples: [],
      })
      expect(row.p50Ms, table).to.be.above(0)
      expect(row.p99Ms, table).to.be.at.least(row.p50Ms!)
      expect(row.callsPerSecond, table).to.be.above(0)
    }
    expect(report.containersLeft, table).to.equal(0)
  })

  it('prints the raw commands with the flags of amp\'s worker', () => {
    expect(report.commands.raw).to.match(/ run --interactive --rm --name amp-\S+ .*--cap-drop ALL .*--log-driver none --pull missing -- amp-test\/upper:1$/)
    expect(report.commands.plain).to.match(/ run -i --rm --network none amp-test\/upper:1$/)
  })

  it('writes the markdown table and the chart', () => {
    const md = readFileSync(path.join(dir, 'perf.md'), 'utf8')
    for (const name of Object.values(ROW_NAMES)) expect(md).to.include(`| ${name} |`)
    expect(md).to.include(`${report.machine.cores} cores`).and.include(`docker ${report.machine.docker}`)
    const svg = readFileSync(path.join(dir, 'perf.svg'), 'utf8')
    expect(svg).to.match(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    expect(svg.match(/<rect x=/g)?.length).to.equal(2 * report.rows.filter((row) => !row.skipped).length)
  })
})
