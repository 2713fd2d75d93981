/**
 * amp end to end over HTTP, driven by autocannon (programmatic API): POST /<fn> with a fresh body
 * per call, at a fixed number of connections, closed loop or at autocannon's `overallRate`. Every
 * answer must be 200 with the body in upper case; anything else (another status, a wrong body, a
 * timeout or a connection error) is counted and sampled.
 */
import {performance} from 'node:perf_hooks'
import autocannon from 'autocannon'

import {plan} from './perf-pacing.js'
import {callInput, expectedOutput, type Measured, Tally} from './perf-tally.js'

export interface HttpRow {
  /** The listener, http://host:port */
  url: string
  fn: string
  connections: number
  rate?: number
  calls: number
  warmup: number
  tag: string
  /** Seconds autocannon waits for one answer. */
  timeoutS?: number
}

export async function runHttp(row: HttpRow): Promise<Measured> {
  if (row.warmup > 0) await cannon({...row, connections: 1, rate: undefined, calls: row.warmup}, new Tally())
  const tally = new Tally()
  const started = performance.now()
  await cannon(row, tally)
  return tally.result(row.calls, performance.now() - started)
}

async function cannon(row: HttpRow, tally: Tally): Promise<void> {
  // Checks the arithmetic autocannon does silently (it lowers connections to the rate, and refuses more connections than calls).
  const {connections} = plan(row.calls, row.connections, row.rate)
  // Bodies sent and not answered yet: an answer must be one of them in upper case, once.
  const waiting = new Map<string, string>()
  // autocannon calls onResponse, then emits `response` with that call's latency (hrtime, ms), in one go.
  let verdict: string | undefined
  await new Promise<void>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${row.url}/${row.fn}`,
        connections,
        amount: row.calls,
        ...(row.rate === undefined ? {} : {overallRate: row.rate}),
        timeout: row.timeoutS ?? 120,
        requests: [
          {
            method: 'POST',
            setupRequest: (request) => {
              const input = callInput(row.tag)
              waiting.set(expectedOutput(input), input)
              return {...request, body: input}
            },
            onResponse: (status, body) => {
              verdict = checkHttp(waiting, status, body)
            },
          },
        ],
      },
      (error) => (error ? reject(error) : resolve()),
    )
    instance.on('response', (_client, _status, _bytes, ms) => tally.answered(ms, verdict))
    instance.on('reqError', (error: Error) => tally.failed(`no answer: ${error.message}`))
  })
}

function checkHttp(waiting: Map<string, string>, status: number, body: string): string | undefined {
  if (status !== 200) return `${status}: ${body.trim().slice(0, 160)}`
  const input = waiting.get(body)
  if (input === undefined) return `200 with a body that is no input in upper case: ${JSON.stringify(body.slice(0, 80))}`
  waiting.delete(body)
  return undefined
}
