import type {WorkerCallResult, WorkerMetrics} from '../shared/metrics.js'
import type {RunResult} from './container-runner.js'

/** How a call's result counts in amp_worker_calls_total. */
export function callResult(result: RunResult): WorkerCallResult {
  if (result.outcome === 'exited') return result.exitCode === 0 ? 'ok' : 'nonzero_exit'
  return result.outcome === 'timeout' ? 'timeout' : 'failed'
}

/**
 * Counts a finished call, sync or asynchronous, and its phases (queue, start, run). `ran`: it got
 * a container; one that did not (its caller left, the worker gave up) counts no start.
 */
export function observeCall(metrics: WorkerMetrics, call: {function: string}, result: RunResult, queueMs: number, ran = true): void {
  metrics.calls.inc({function: call.function, result: callResult(result)})
  if (ran) metrics.starts.inc({function: call.function, start: result.reused ? 'reused' : result.warm ? 'warm' : 'cold'})
  if (result.killed) metrics.containersKilled.inc({reason: result.killed})
  metrics.phases.observe(call.function, {queueMs, startMs: result.startMs, runMs: result.runMs})
}
