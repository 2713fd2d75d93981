/**
 * How the benchmark spreads calls over connections and time, the way autocannon does, so the raw
 * `docker run` rows (driven from Node) get exactly the arrivals the HTTP rows get from autocannon:
 * - `calls` and a rate are split over the connections as evenly as whole numbers allow;
 * - a rate below the number of connections lowers the connections to the rate;
 * - a rate is a budget per connection per one-second window: a connection sends calls back to back
 *   until its budget of the window is spent, then waits for the next window (autocannon resets its
 *   count every 1000 ms). At 1 connection and 2 calls/s, calls go in pairs: one, the next as soon
 *   as the first is answered, then a pause until the next second.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {performance} from 'node:perf_hooks'

/** The i-th of `parts` near-equal whole shares of `total` (autocannon's distributeNums). */
export function share(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0)
}

export interface Plan {
  /** Connections actually used. */
  connections: number
  /** Calls each connection makes. */
  calls: number[]
  /** Calls per second each connection may make; undefined: as fast as answers come (closed loop). */
  rates?: number[]
}

export function plan(calls: number, connections: number, rate?: number): Plan {
  const used = rate === undefined ? connections : Math.min(connections, rate)
  if (calls < used) throw new RangeError(`${calls} calls cannot keep ${used} connections busy`)
  const each = (total: number) => Array.from({length: used}, (_, i) => share(total, used, i))
  return {connections: used, calls: each(calls), ...(rate === undefined ? {} : {rates: each(rate)})}
}

export interface Clock {
  now(): number
  sleep(ms: number): Promise<unknown>
}

const realClock: Clock = {now: () => performance.now(), sleep: (ms) => sleep(ms)}

/** One connection's rate limit: at most `rate` calls in each one-second window counted from its creation. */
export class SecondBudget {
  private windowStart: number
  private used = 0

  constructor(private readonly rate: number, private readonly clock: Clock = realClock) {
    this.windowStart = clock.now()
  }

  /** Resolves when the next call may start, and counts it. */
  async take(): Promise<void> {
    const now = this.clock.now()
    const passed = Math.floor((now - this.windowStart) / 1000)
    if (passed > 0) {
      this.windowStart += passed * 1000
      this.used = 0
    }
    if (this.used >= this.rate) {
      await this.clock.sleep(this.windowStart + 1000 - now)
      this.windowStart += 1000
      this.used = 0
    }
    this.used++
  }
}

/** Runs `oneCall` on each connection of the plan, one call at a time per connection, paced by its budget. */
export async function drive(p: Plan, oneCall: () => Promise<void>, clock: Clock = realClock): Promise<void> {
  await Promise.all(
    p.calls.map(async (count, i) => {
      const budget = p.rates ? new SecondBudget(p.rates[i], clock) : undefined
      for (let n = 0; n < count; n++) {
        await budget?.take()
        await oneCall()
      }
    }),
  )
}
