import {expect} from 'chai'

import {formatReport, runLoad} from '../../bench/load-run.js'

// The load test of bench/load.ts at CI size: the same code, fewer calls.
describe('load (bench/load.ts at CI size)', function () {
  this.timeout(600_000) // a shared CI machine can be down to ~1 call/s

  for (const [mode, calls] of [['reuse', 1000], ['prestart', 60], ['fresh', 60]] as const) {
    it(`${calls} calls (${mode}) at 32 connections through 2 workers: each answer is its own body, nothing lost or left`, async () => {
      const report = await runLoad({calls, connections: 32, workers: 2, concurrency: 4, mode})
      const table = formatReport(report)
      expect(report.mode, table).to.equal(mode)
      expect(report.lost, table).to.equal(0)
      expect(report.crossed, table).to.equal(0)
      expect(report.byStatus, table).to.deep.equal({})
      expect(report.ok, table).to.equal(calls)
      expect(report.containersLeft, table).to.equal(0)
    })
  }
})
