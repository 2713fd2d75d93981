/**
 * Prometheus metrics of the listener and the worker (prom-client). Every name is documented in
 * docs/metrics.md; keep the two in step (test/runtime/shared/metrics.test.ts checks it).
 * Each daemon gets its own Registry, injected so tests read their own numbers.
 */
import {collectDefaultMetrics, Counter, Gauge, Histogram, Registry} from 'prom-client'

export {Registry}

/** Seconds; calls take from a few milliseconds to many minutes. */
const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900]
/** Seconds; creating and starting a container takes tens of milliseconds to seconds (longer when it pulls). */
const START_BUCKETS = [0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10, 30, 60]
/** Seconds; a call waits for a free slot from nothing to minutes. */
const QUEUE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300]

/** A registry with Node's process metrics (as amp_process_*, amp_nodejs_*): what a daemon serves. */
export function daemonRegistry(): Registry {
  const registry = new Registry()
  collectDefaultMetrics({register: registry, prefix: 'amp_'})
  return registry
}

/** Where one call spent its time on the worker, in milliseconds (see docs/metrics.md for what each measures). */
export interface CallPhases {
  queueMs?: number
  startMs?: number
  runMs?: number
}

/** The three phase histograms, by function; the listener and the worker each have a set under their own prefix. */
class PhaseHistograms {
  readonly queueWait: Histogram<'function'>
  readonly containerStart: Histogram<'function'>
  readonly containerRun: Histogram<'function'>

  constructor(registry: Registry, prefix: string, source: string) {
    this.queueWait = new Histogram({
      name: `${prefix}_queue_wait_seconds`,
      help: `Time a call waited on its worker for a free slot${source}`,
      labelNames: ['function'],
      buckets: QUEUE_BUCKETS,
      registers: [registry],
    })
    this.containerStart = new Histogram({
      name: `${prefix}_container_start_seconds`,
      help: `From running docker run to Docker's start event for the call's container (pull, create, start)${source}`,
      labelNames: ['function'],
      buckets: START_BUCKETS,
      registers: [registry],
    })
    this.containerRun = new Histogram({
      name: `${prefix}_container_run_seconds`,
      help: `From Docker's start event to the container's exit${source}`,
      labelNames: ['function'],
      buckets: CALL_BUCKETS,
      registers: [registry],
    })
  }

  observe(fn: string, phases: CallPhases): void {
    const seconds = (ms: number | undefined) => (ms !== undefined && Number.isFinite(ms) && ms >= 0 ? ms / 1000 : undefined)
    const queue = seconds(phases.queueMs)
    const start = seconds(phases.startMs)
    const run = seconds(phases.runMs)
    if (queue !== undefined) this.queueWait.observe({function: fn}, queue)
    if (start !== undefined) this.containerStart.observe({function: fn}, start)
    if (run !== undefined) this.containerRun.observe({function: fn}, run)
  }
}

/** Live state a daemon reports at scrape time. */
export interface ListenerState {
  natsConnected(): boolean
  etcdUp(): Promise<boolean>
  draining(): boolean
  /** Asynchronous calls in JetStream (NaN when it cannot be read). */
  asyncQueue?(): Promise<AsyncQueueState>
}

export interface AsyncQueueState {
  /** Stored, not yet taken by a worker. */
  waiting: number
  /** Taken by a worker and not yet acked: running, or waiting for a retry. */
  taken: number
  /** Messages in AMP_DEAD. */
  deadLetters: number
}

export class ListenerMetrics {
  readonly calls: Counter<'function' | 'status'>
  readonly callDuration: Histogram<'function'>
  readonly inFlight: Gauge
  readonly phases: PhaseHistograms

  constructor(readonly registry: Registry, state: ListenerState) {
    this.calls = new Counter({
      name: 'amp_listener_calls_total',
      help: 'Calls answered (POST /<function>), by function and HTTP status; function is "" when no such function exists',
      labelNames: ['function', 'status'],
      registers: [registry],
    })
    this.callDuration = new Histogram({
      name: 'amp_listener_call_duration_seconds',
      help: 'End to end: from the request reaching the listener to its answer, by function',
      labelNames: ['function'],
      buckets: CALL_BUCKETS,
      registers: [registry],
    })
    this.inFlight = new Gauge({
      name: 'amp_listener_calls_in_flight',
      help: 'Calls the listener is serving now',
      registers: [registry],
    })
    this.phases = new PhaseHistograms(registry, 'amp_listener', ', as reported by the worker in the result')
    gauge(registry, 'amp_listener_nats_connected', '1 while the listener is connected to NATS', () => state.natsConnected())
    gauge(registry, 'amp_listener_etcd_up', '1 when etcd answered the last check (at most ~2 s old) and the function cache of the listener is in sync', () => state.etcdUp())
    gauge(registry, 'amp_listener_draining', '1 once the listener is shutting down and turns new calls away', () => state.draining())
    const queue = (key: keyof AsyncQueueState) => async () => (state.asyncQueue ? (await state.asyncQueue())[key] : Number.NaN)
    gauge(registry, 'amp_async_calls_waiting', 'Asynchronous calls stored in JetStream that no worker has taken yet', queue('waiting'))
    gauge(registry, 'amp_async_calls_taken', 'Asynchronous calls a worker has taken and not yet finished: running, or waiting to be tried again', queue('taken'))
    gauge(registry, 'amp_async_dead_letters', 'Dead letters kept in the AMP_DEAD stream', queue('deadLetters'))
  }

  /** Counts a call as in flight; call what it returns once with the answer's function ("" if none) and status. */
  callStarted(now: () => number = Date.now): (fn: string, status: number) => void {
    const started = now()
    this.inFlight.inc()
    let done = false
    return (fn, status) => {
      if (done) return
      done = true
      this.inFlight.dec()
      this.calls.inc({function: fn, status: String(status)})
      this.callDuration.observe({function: fn}, (now() - started) / 1000)
    }
  }
}

export interface WorkerState {
  natsConnected(): boolean
  dockerUp(): Promise<boolean>
  draining(): boolean
  slotsUsed(): number
  inFlight(): number
  /** Pre-started containers waiting for a call. */
  prestarted(): number
}

/** How a call ended on the worker. */
export type WorkerCallResult = 'ok' | 'nonzero_exit' | 'timeout' | 'failed'
/** Why a worker killed a container: timeout, stdout over the limit, drain deadline, or nobody waits for the call any more (caller or listener gone). */
export type KillReason = 'timeout' | 'output' | 'shutdown' | 'caller'

export class WorkerMetrics {
  readonly calls: Counter<'function' | 'result'>
  readonly refused: Counter<'reason'>
  readonly containersStarted: Counter
  readonly starts: Counter<'function' | 'start'>
  readonly containersKilled: Counter<'reason'>
  readonly asyncCalls: Counter<'function' | 'outcome'>
  readonly phases: PhaseHistograms

  constructor(readonly registry: Registry, state: WorkerState, concurrency: number) {
    this.calls = new Counter({
      name: 'amp_worker_calls_total',
      help: 'Calls this worker ran, by function and result (ok, nonzero_exit, timeout, failed)',
      labelNames: ['function', 'result'],
      registers: [registry],
    })
    this.refused = new Counter({
      name: 'amp_worker_calls_refused_total',
      help: 'Calls this worker turned away: busy (backlog full or draining) or rejected (invalid call)',
      labelNames: ['reason'],
      registers: [registry],
    })
    this.containersStarted = new Counter({
      name: 'amp_worker_containers_started_total',
      help: 'docker run commands this worker ran (one per call that reached a slot)',
      registers: [registry],
    })
    this.starts = new Counter({
      name: 'amp_worker_container_starts_total',
      help: 'Calls that ran a container, by function and start: warm (a pre-started container), reused (a warm container of a --reuse function that served calls before) or cold (docker run at the call)',
      labelNames: ['function', 'start'],
      registers: [registry],
    })
    this.asyncCalls = new Counter({
      name: 'amp_worker_async_deliveries_total',
      help: 'Deliveries of asynchronous calls to this worker, by function and outcome (succeeded, retried, dead_lettered, requeued, skipped, dropped, refused)',
      labelNames: ['function', 'outcome'],
      registers: [registry],
    })
    this.containersKilled = new Counter({
      name: 'amp_worker_containers_killed_total',
      help: 'Containers this worker killed, by reason: timeout, output (stdout over the limit), shutdown (drain deadline), caller (nobody waits for the call: its caller hung up or its listener died)',
      labelNames: ['reason'],
      registers: [registry],
    })
    this.phases = new PhaseHistograms(registry, 'amp_worker', '')
    const slots = new Gauge({name: 'amp_worker_slots', help: 'Containers this worker runs at once at most (--concurrency)', registers: [registry]})
    slots.set(concurrency)
    gauge(registry, 'amp_worker_slots_used', 'Slots running a container now', () => state.slotsUsed())
    gauge(registry, 'amp_worker_calls_in_flight', 'Calls accepted and not yet answered (waiting for a slot or running)', () => state.inFlight())
    gauge(registry, 'amp_worker_prestarted_containers', 'Pre-started containers waiting for a call (at most --prestart-max)', () => state.prestarted())
    gauge(registry, 'amp_worker_nats_connected', '1 while the worker is connected to NATS', () => state.natsConnected())
    gauge(registry, 'amp_worker_docker_up', '1 when the docker CLI reached the engine at the last check (at most ~5 s old)', () => state.dockerUp())
    gauge(registry, 'amp_worker_draining', '1 once the worker is shutting down and takes no new calls', () => state.draining())
    // Zero series, so a dashboard shows 0 rather than nothing before the first kill.
    for (const reason of ['timeout', 'output', 'shutdown', 'caller'] satisfies KillReason[]) this.containersKilled.inc({reason}, 0)
  }
}

/** A gauge whose value is read when scraped. */
function gauge(registry: Registry, name: string, help: string, read: () => number | boolean | Promise<number | boolean>): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    async collect() {
      this.set(Number(await read()))
    },
  })
}
