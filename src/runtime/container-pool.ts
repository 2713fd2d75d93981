/**
 * Pools of pre-started containers (README "Pre-started containers"). Per key (a hash of everything
 * that shapes a container), a worker keeps a few containers already started and blocked reading
 * their stdin; each is taken by exactly one call, so isolation is the same as a fresh `docker run`.
 * This file holds the bookkeeping only: when to start, hand out and remove containers. Starting and
 * removing them are injected (the runner does both with the docker CLI), so tests drive it with fakes.
 */
import {setTimeout as sleep} from 'node:timers/promises'

/** A container of a pool, as the pool sees it. */
export interface Prestarted {
  readonly name: string
  /** Settles once the container's docker CLI has exited (used, killed, removed or failed). */
  readonly exited: Promise<unknown>
  /** Settles once the container runs (Docker's start event); until then its start still costs the engine work. Absent: counted as started. */
  readonly ready?: Promise<unknown>
  /** Ends the docker CLI itself: the last resort when removing the container does not end it (the engine does not answer). */
  abandon(): void
}

export interface PoolDeps<C extends Prestarted, S> {
  /** Starts one container of these settings; a throw counts as a container that failed to start. */
  start(settings: S): C
  /** Removes containers by name, whatever their state (`docker rm --force`); never throws. */
  remove(names: string[]): Promise<void>
  now?: () => number
}

export interface PoolOptions {
  /** Most idle pre-started containers across all keys (the worker's --prestart-max). */
  max: number
  /** A key without a call for this long loses its containers (--prestart-idle). */
  idleMs: number
  /** How far back "calls running at once" is looked at to size a pool. */
  windowMs?: number
  /** How long a removal waits for a container's docker CLI to exit before it removes again (see discard). */
  removeRetryMs?: number
  /**
   * Whether the engine has room for one more container start, given the pool's own starts in
   * progress (the worker: a free call slot beyond them and no call waiting). A start costs Docker as
   * much as a cold call, so a saturated worker starts none: they would slow the calls running now.
   */
  canStart?: (starting: number) => boolean
  /** Runs a top-up after a call ends, once its answer is out (AFTER_ANSWER_MS; tests pass a synchronous one). */
  defer?: (task: () => void) => void
}

export const DEMAND_WINDOW_MS = 30_000
/**
 * Containers a called function keeps at least (within its prestart): a call's replacement takes a
 * whole container start (about 0.3 s), so with one, calls coming back to back would find it still
 * starting; with two, one is ready while the other starts.
 */
export const MIN_WARM = 2
/** --prestart-idle by default. */
export const DEFAULT_PRESTART_IDLE_MS = 60_000
/** After a container exits before use, its key starts no other one for this long, doubled at each failure in a row. */
export const BACKOFF_BASE_MS = 1000
export const BACKOFF_MAX_MS = 60_000
const REMOVE_RETRY_MS = 250
/**
 * Docker work that follows a call (its container's removal, its replacement's start) waits this
 * long: spawning a docker CLI blocks the event loop for milliseconds, and the call's answer (and a
 * listener in the same process answering its caller) goes first. Nothing waits for that work.
 */
export const AFTER_ANSWER_MS = 50
/** Removals tried before giving up on a container (an engine that does not answer): the orphan sweep of the next worker start takes it. */
const REMOVE_ROUNDS = 20

/** What take() gives a call: a container when one was there, and done() to call once the call is over. */
export interface Ticket<C> {
  container?: C
  done(): void
}

interface Pool<C, S> {
  key: string
  function: string
  settings: S
  prestart: number
  /** Started and not taken, oldest first (some may still be starting). */
  idle: C[]
  /** Calls of this key running now, warm or cold. */
  running: number
  /** The number of calls running just after each call started, within the window. */
  samples: Array<{at: number; running: number}>
  lastCallAt: number
  failures: number
  retryAt: number
}

export class ContainerPool<C extends Prestarted, S extends {function: string}> {
  private readonly pools = new Map<string, Pool<C, S>>()
  private readonly exited = new WeakSet<C>()
  private readonly removals = new Set<Promise<void>>()
  private readonly now: () => number
  private readonly windowMs: number
  private readonly removeRetryMs: number
  private readonly canStart: (starting: number) => boolean
  private readonly defer: (task: () => void) => void
  /** Containers started and not yet running (see Prestarted.ready). */
  private starting = 0
  private closed = false

  constructor(private readonly deps: PoolDeps<C, S>, private readonly options: PoolOptions) {
    this.now = deps.now ?? Date.now
    this.windowMs = options.windowMs ?? DEMAND_WINDOW_MS
    this.removeRetryMs = options.removeRetryMs ?? REMOVE_RETRY_MS
    this.canStart = options.canStart ?? (() => true)
    this.defer = options.defer ?? ((task) => void setTimeout(task, AFTER_ANSWER_MS).unref())
  }

  /**
   * A call of `key` starts: it gets the oldest container of the pool if there is one (one still
   * starting too: better than a second cold start). The pool is topped up once the call is over
   * (done), not now: a start now would compete with the call for the engine. `prestart` is the
   * function's setting (0: never pooled). Synchronous on purpose: no await between a call starting
   * and its container being known.
   */
  take(key: string, settings: S, prestart: number): Ticket<C> {
    if (this.closed || this.options.max === 0) return {done: () => {}}
    let pool = this.pools.get(key)
    if (prestart === 0) {
      if (pool) this.dropPool(pool)
      return {done: () => {}}
    }
    const now = this.now()
    if (!pool) {
      pool = {key, function: settings.function, settings, prestart, idle: [], running: 0, samples: [], lastCallAt: now, failures: 0, retryAt: 0}
      this.pools.set(key, pool)
    }
    pool.prestart = prestart
    pool.lastCallAt = now
    pool.running++
    pool.samples = pool.samples.filter((sample) => now - sample.at < this.windowMs)
    pool.samples.push({at: now, running: pool.running})
    const container = pool.idle.shift()
    // Alive when taken: whatever made earlier ones fail is over.
    if (container) pool.failures = 0
    this.trim(pool)
    const owner = pool
    let done = false
    return {
      container,
      done: () => {
        if (done) return
        done = true
        owner.running--
        this.defer(() => this.topUp())
      },
    }
  }

  /**
   * Starts containers where pools are below their target, the most recently called function first,
   * while the engine has room (canStart). Run after each call and by the owner's timer.
   */
  topUp(): void {
    const pools = [...this.pools.values()].sort((a, b) => b.lastCallAt - a.lastCallAt)
    for (const pool of pools) if (!this.fill(pool)) return
  }

  /** How many containers the pool of `key` aims to hold: 0 when it has none. */
  target(key: string): number {
    const pool = this.pools.get(key)
    return pool ? this.targetOf(pool) : 0
  }

  /** Idle (started, not taken) containers across all pools. */
  get idle(): number {
    let count = 0
    for (const pool of this.pools.values()) count += pool.idle.length
    return count
  }

  /** Idle containers of one key (for tests and logs). */
  idleOf(key: string): number {
    return this.pools.get(key)?.idle.length ?? 0
  }

  /** Removes the pools of a function that changed or was removed; their containers would never be taken again. */
  drain(fn: string): Promise<void> {
    const removed: C[] = []
    for (const pool of [...this.pools.values()]) {
      if (pool.function !== fn) continue
      removed.push(...pool.idle.splice(0))
      this.pools.delete(pool.key)
    }
    return this.discard(removed)
  }

  /** Removes the containers of keys without a call for idleMs; run every few seconds by the owner. */
  sweep(): Promise<void> {
    const now = this.now()
    const removed: C[] = []
    for (const pool of [...this.pools.values()]) {
      if (now - pool.lastCallAt < this.options.idleMs) continue
      removed.push(...pool.idle.splice(0))
      if (pool.running === 0) this.pools.delete(pool.key)
    }
    return this.discard(removed)
  }

  /** Stops starting containers and removes every idle one (one removal for all); resolves once all removals are done. */
  async close(): Promise<void> {
    this.closed = true
    const removed = [...this.pools.values()].flatMap((pool) => pool.idle.splice(0))
    this.pools.clear()
    await this.discard(removed)
    await Promise.allSettled([...this.removals])
  }

  private targetOf(pool: Pool<C, S>): number {
    const now = this.now()
    let peak = 0
    for (const sample of pool.samples) if (now - sample.at < this.windowMs) peak = Math.max(peak, sample.running)
    return Math.min(pool.prestart, this.options.max, Math.max(MIN_WARM, peak))
  }

  /**
   * Starts containers until the pool reaches its target, within the worker-wide cap, unless it backs
   * off. False when the engine has no room left (the caller stops topping up other pools too).
   */
  private fill(pool: Pool<C, S>): boolean {
    if (this.closed) return false
    // Backing off, or idle: the sweep would remove what this starts (a pool lives on while a call runs past --prestart-idle).
    if (this.now() < pool.retryAt || this.now() - pool.lastCallAt >= this.options.idleMs) return true
    const target = this.targetOf(pool)
    while (pool.idle.length < target && this.idle < this.options.max) {
      if (!this.canStart(this.starting)) return false
      let container: C
      try {
        container = this.deps.start(pool.settings)
      } catch {
        this.failed(pool)
        return true
      }
      pool.idle.push(container)
      if (container.ready) this.countStart(container)
      void container.exited.then(() => this.onExit(pool, container), () => this.onExit(pool, container))
    }
    return true
  }

  /** Counts a container as starting until it runs or exits; its end of start frees room for the next. */
  private countStart(container: C): void {
    this.starting++
    let counted = true
    const started = () => {
      if (!counted) return
      counted = false
      this.starting--
      this.defer(() => this.topUp())
    }
    void Promise.race([container.ready, container.exited]).then(started, started)
  }

  /** A lower prestart (the function changed) or a smaller demand than before: remove the surplus. */
  private trim(pool: Pool<C, S>): void {
    const surplus = pool.idle.length - pool.prestart
    if (surplus > 0) void this.discard(pool.idle.splice(pool.prestart, surplus))
  }

  private onExit(pool: Pool<C, S>, container: C): void {
    this.exited.add(container)
    const index = pool.idle.indexOf(container)
    // Taken (the call removes it) or already being removed: nothing to do.
    if (index < 0) return
    // Exited before any input: the image is missing, the process does not wait for stdin... Calls run fresh, and report it as today.
    pool.idle.splice(index, 1)
    this.failed(pool)
    void this.discard([container])
  }

  private failed(pool: Pool<C, S>): void {
    pool.failures++
    pool.retryAt = this.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (pool.failures - 1))
  }

  private dropPool(pool: Pool<C, S>): void {
    void this.discard(pool.idle.splice(0))
    if (pool.running === 0) this.pools.delete(pool.key)
  }

  /**
   * Removes containers and waits for their docker CLIs to exit. A container still being created
   * when `docker rm` runs is not found, and would then start: so remove again until each has exited.
   */
  private discard(containers: C[]): Promise<void> {
    if (containers.length === 0) return Promise.resolve()
    const task = (async () => {
      let left = containers
      let rounds = 0
      while (left.length > 0) {
        if (rounds === REMOVE_ROUNDS) {
          for (const container of left) container.abandon()
          return
        }
        rounds++
        await this.deps.remove(left.map((container) => container.name))
        const all = Promise.allSettled(left.map((container) => container.exited)).then(() => true)
        if (await Promise.race([all, sleep(this.removeRetryMs, false, {ref: false})])) break
        left = left.filter((container) => !this.exited.has(container))
      }
      // After several rounds one may have exited on its own between two removals: make sure it is gone.
      if (rounds > 1) await this.deps.remove(containers.map((container) => container.name))
    })()
    this.removals.add(task)
    void task.finally(() => this.removals.delete(task))
    return task
  }
}
