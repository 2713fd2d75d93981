/**
 * What one benchmark row measured: each call's wall time, and whether its answer was right. Every
 * call sends its own lowercase text; the right answer is that text in upper case (the function is
 * `tr a-z A-Z`), so a wrong, empty or crossed answer counts as an error like a failed call does.
 */
import {percentile} from './load-run.js'

const MAX_SAMPLES = 5

export interface Measured {
  calls: number
  /** Answered right. */
  ok: number
  /** Not answered, answered wrong, or answered with a failure; `samples` shows the first few. */
  errors: number
  samples: string[]
  p50Ms: number
  p99Ms: number
  durationMs: number
  callsPerSecond: number
}

let sequence = 0

/** A fresh input for one call: unique, lowercase ASCII. */
export function callInput(tag: string): string {
  return `call ${++sequence} of ${tag}: hello amp functions\n`
}

/** The answer `tr a-z A-Z` gives. */
export function expectedOutput(input: string): string {
  return input.toUpperCase()
}

export class Tally {
  private readonly latencies: number[] = []
  private ok = 0
  private errors = 0
  private readonly samples: string[] = []

  /** A call that got an answer in `ms`; `error` says why that answer is wrong, if it is. */
  answered(ms: number, error?: string): void {
    this.latencies.push(ms)
    if (error === undefined) this.ok++
    else this.failed(error)
  }

  /** A call that got no answer at all. */
  failed(error: string): void {
    this.errors++
    if (this.samples.length < MAX_SAMPLES) this.samples.push(error)
  }

  result(calls: number, durationMs: number): Measured {
    const sorted = [...this.latencies].sort((a, b) => a - b)
    return {
      calls,
      ok: this.ok,
      errors: this.errors + Math.max(0, calls - this.ok - this.errors),
      samples: this.samples,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      durationMs,
      callsPerSecond: durationMs > 0 ? (calls / durationMs) * 1000 : 0,
    }
  }
}

/** Why an output is not the right answer to `input`, or undefined when it is. */
export function wrongAnswer(input: string, output: string): string | undefined {
  if (output === expectedOutput(input)) return undefined
  return `wrong answer to ${JSON.stringify(input.trim())}: ${JSON.stringify(output.slice(0, 80))}`
}
