/**
 * Pools of containers started ahead of calls (docs/functions.md "Pre-started containers" and "Warm
 * containers"). Per key (a hash of everything that shapes a container), a worker keeps a few
 * containers already started. In a single-use pool each is taken by exactly one call and then
 * removed, so isolation is the same as a fresh `docker run`. In a reuse pool (functions created
 * `--reuse`) a container comes back after a call that ended cleanly and serves the next one: a call
 * that finds none free waits for the first one that is, and one more is started for it while the
 * pool is below its bound.
 * This file holds the bookkeeping only: when to start, hand out, take back and remove containers.
 * Starting and removing them are injected (the runner does both with the docker CLI), so tests
 * drive it with fakes.
 */
import {setTimeout as sleep} from 'node:timers/promises'

/** A container of a pool, as the pool sees it. */
export interface Prestarted {
  readonly name: string
  /** Settles once the container's docker CLI has exited (used, killed, removed or failed). */
  readonly exited: Promise<unknown>
  /** Settles once the container runs (Docker's start event, or its runner's hello); until then its start still costs the engine work. Absent: counted as started. */
  readonly ready?: Promise<unknown>
  /** Ends the docker CLI itself: the last resort when removing the container does not end it (the engine does not answer). */
  abandon(): void
  /** Told before the pool removes it: a container still starting must not be given calls once up. */
  close?(): void
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
  /** A key without a call for this long loses its containers (--prestart-idle); so does a warm container unused for this long. */
  idleMs: number
  /** How far back "calls running at once" is looked at to size a pool. */
  windowMs?: number
  /** How long a removal waits for a container's docker CLI to exit before it removes again (see discard). */
  removeRetryMs?: number
  /**
   * Whether the engine has room for one more container start, given the pool's own starts in
   * progress (the worker: a free call slot beyond them and no call waiting). A start costs Docker as
   * much as a cold call, so a saturated worker starts none: they would slow the calls running now.
   * Starts for calls that wait for a warm container do not ask: those calls hold their slot.
   */
  canStart?: (starting: number) => boolean
  /** Runs a top-up after a call ends, once its answer is out (AFTER_ANSWER_MS; tests pass a synchronous one). */
  defer?: (task: () => void) => void
  /** A function's count of free containers that are up (ready and idle) may have changed: see free(). */
  onFree?: (fn: string) => void
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

/** What take() gives a call. */
export interface Ticket<C> {
  /** A container at once: a single-use pool's oldest (perhaps still starting), or a free warm one. */
  container?: C
  /**
   * A reuse pool with none free: settles with the first container that is free and up, or with
   * undefined when none will come (backing off, drained, closing, or the call left): the call then
   * runs without the pool.
   */
  wait?: Promise<C | undefined>
  /** The call is over. `keep`: its warm container served it cleanly and may serve the next call. */
  done(keep?: boolean): void
  /** The call no longer waits (its caller is gone, the worker gives up): its wait settles with undefined. */
  leave(): void
}

interface Pool<C, S> {
  key: string
  function: string
  settings: S
  prestart: number
  /** Containers come back after their call (the function's --reuse). */
  reuse: boolean
  /** Free containers, the next to hand out first: single-use pools oldest first (some may still be starting); reuse pools up and most recently used first. */
  idle: C[]
  /** Reuse pools: containers starting, not yet up; each goes to a waiting call, or to idle, once up. */
  starting: C[]
  /** Reuse pools: containers serving a call, which come back unless the call ends badly. */
  busy: number
  /** Reuse pools: calls waiting for a container, in arrival order. */
  waiters: Array<(container: C | undefined) => void>
  /** Calls of this key running now, warm or cold. */
  running: number
  /** Per second of the window, the most calls that ran at once just after one started (bounded: one entry a second, not one a call). */
  peaks: Array<{second: number; running: number}>
  lastCallAt: number
  failures: number
  retryAt: number
}

export class ContainerPool<C extends Prestarted, S extends {function: string}> {
  private readonly pools = new Map<string, Pool<C, S>>()
  private readonly exited = new WeakSet<C>()
  private readonly up = new WeakSet<C>()
  /** Reuse pools: when each idle container last finished a call (or came up). */
  private readonly idleSince = new WeakMap<C, number>()
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
   * A call of `key` starts. Single-use pools (`reuse` false): it gets the oldest container of the
   * pool if there is one (one still starting too: better than a second cold start); the pool is
   * topped up once the call is over (done), not now: a start now would compete with the call for the
   * engine. Reuse pools: it gets a free container, or waits for one (see Ticket.wait). `prestart`
   * is the function's setting (0: never pooled). Synchronous on purpose: no await between a call
   * starting and its container being known.
   */
  take(key: string, settings: S, prestart: number, reuse = false): Ticket<C> {
    const none: Ticket<C> = {done: () => {}, leave: () => {}}
    if (this.closed || this.options.max === 0) return none
    let pool = this.pools.get(key)
    if (prestart === 0) {
      if (pool) this.dropPool(pool)
      return none
    }
    const now = this.now()
    if (!pool) {
      pool = {key, function: settings.function, settings, prestart, reuse, idle: [], starting: [], busy: 0, waiters: [], running: 0, peaks: [], lastCallAt: now, failures: 0, retryAt: 0}
      this.pools.set(key, pool)
    }
    pool.prestart = prestart
    pool.lastCallAt = now
    pool.running++
    this.notePeak(pool, now)
    const owner = pool
    let finished = false
    let held: C | undefined
    const done = (keep = false) => {
      if (finished) return
      finished = true
      owner.running--
      if (held && owner.reuse) {
        owner.busy--
        if (keep) this.giveBack(owner, held)
        else this.grow(owner)
      }
      this.defer(() => this.topUp())
    }
    if (!pool.reuse) {
      held = pool.idle.shift()
      // Alive when taken: whatever made earlier ones fail is over.
      if (held) pool.failures = 0
      this.trim(pool)
      if (held) this.changed(pool)
      return {container: held, done, leave: () => {}}
    }
    held = pool.idle.shift()
    if (held) {
      pool.busy++
      this.changed(pool)
      return {container: held, done, leave: () => {}}
    }
    let settle!: (container: C | undefined) => void
    const wait = new Promise<C | undefined>((resolve) => (settle = resolve))
    const waiter = (container: C | undefined) => {
      held = container
      settle(container)
    }
    pool.waiters.push(waiter)
    this.grow(pool)
    const leave = () => {
      const index = owner.waiters.indexOf(waiter)
      if (index < 0) return
      owner.waiters.splice(index, 1)
      settle(undefined)
    }
    return {wait, done, leave}
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

  /** Containers of one function that are up and free now: a call of it sent here would start without waiting. */
  free(fn: string): number {
    let count = 0
    for (const pool of this.pools.values()) {
      if (pool.function === fn) count += pool.idle.filter((container) => this.up.has(container)).length
    }
    return count
  }

  /** Removes the pools of a function that changed or was removed; their containers would never be taken again. */
  drain(fn: string): Promise<void> {
    const removed: C[] = []
    for (const pool of [...this.pools.values()]) {
      if (pool.function !== fn) continue
      removed.push(...pool.idle.splice(0), ...pool.starting.splice(0))
      this.pools.delete(pool.key)
      this.release(pool)
      this.changed(pool)
    }
    return this.discard(removed)
  }

  /** Removes the containers of keys without a call for idleMs, and warm containers unused that long; run every few seconds by the owner. */
  sweep(): Promise<void> {
    const now = this.now()
    const removed: C[] = []
    for (const pool of [...this.pools.values()]) {
      const before = pool.idle.length
      if (now - pool.lastCallAt >= this.options.idleMs) {
        removed.push(...pool.idle.splice(0))
        if (pool.running === 0 && pool.starting.length === 0) this.pools.delete(pool.key)
      } else if (pool.reuse) {
        const stale = pool.idle.filter((container) => now - (this.idleSince.get(container) ?? now) >= this.options.idleMs)
        pool.idle = pool.idle.filter((container) => !stale.includes(container))
        removed.push(...stale)
      }
      if (pool.idle.length !== before) this.changed(pool)
    }
    return this.discard(removed)
  }

  /** Stops starting containers and removes every idle one (one removal for all); resolves once all removals are done. */
  async close(): Promise<void> {
    this.closed = true
    const pools = [...this.pools.values()]
    const removed = pools.flatMap((pool) => [...pool.idle.splice(0), ...pool.starting.splice(0)])
    this.pools.clear()
    for (const pool of pools) {
      this.release(pool)
      this.changed(pool)
    }
    await this.discard(removed)
    await Promise.allSettled([...this.removals])
  }

  private notePeak(pool: Pool<C, S>, now: number): void {
    const second = Math.floor(now / 1000)
    const last = pool.peaks.at(-1)
    if (last?.second === second) last.running = Math.max(last.running, pool.running)
    else pool.peaks.push({second, running: pool.running})
    while (pool.peaks.length > 0 && pool.peaks[0].second * 1000 <= now - this.windowMs) pool.peaks.shift()
  }

  private targetOf(pool: Pool<C, S>): number {
    const now = this.now()
    let peak = 0
    // A second counts while its start is within the window (so a peak is forgotten up to a second early).
    for (const {second, running} of pool.peaks) if (second * 1000 > now - this.windowMs) peak = Math.max(peak, running)
    return Math.min(pool.prestart, this.options.max, Math.max(MIN_WARM, peak))
  }

  /** Containers the pool holds or will hold: idle, starting and (reuse pools) serving a call. */
  private size(pool: Pool<C, S>): number {
    return pool.idle.length + pool.starting.length + pool.busy
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
    while (this.size(pool) < target && this.idle < this.options.max) {
      if (!this.canStart(this.starting)) return false
      if (!this.startOne(pool)) return true
    }
    return true
  }

  /** Reuse pools: starts one more container for the calls that wait, within the function's bound, unless it backs off. */
  private grow(pool: Pool<C, S>): void {
    if (this.closed || this.pools.get(pool.key) !== pool) return this.release(pool)
    while (pool.waiters.length > pool.starting.length && this.size(pool) < Math.min(pool.prestart, this.options.max)) {
      if (this.now() < pool.retryAt || !this.startOne(pool)) break
    }
    // Waiters nothing will come for (at the bound only while containers serve calls, which come back).
    if (pool.starting.length + pool.busy === 0) this.release(pool)
  }

  /** Starts one container for the pool; false when it could not be started (the pool backs off). */
  private startOne(pool: Pool<C, S>): boolean {
    let container: C
    try {
      container = this.deps.start(pool.settings)
    } catch {
      this.failed(pool)
      return false
    }
    if (pool.reuse) pool.starting.push(container)
    else pool.idle.push(container)
    if (container.ready) this.countStart(container)
    const up = () => {
      if (this.exited.has(container)) return
      this.up.add(container)
      if (!pool.reuse) return this.changed(pool)
      const index = pool.starting.indexOf(container)
      if (index < 0) return
      pool.starting.splice(index, 1)
      this.giveBack(pool, container)
    }
    if (container.ready) void container.ready.then(up, () => {})
    else up()
    void container.exited.then(() => this.onExit(pool, container), () => this.onExit(pool, container))
    return true
  }

  /** A reuse pool's container free again (back from a call, or just up): to the first waiting call, or idle. */
  private giveBack(pool: Pool<C, S>, container: C): void {
    if (this.closed || this.pools.get(pool.key) !== pool || this.exited.has(container)) {
      if (!this.exited.has(container)) void this.discard([container])
      return this.grow(pool)
    }
    pool.failures = 0
    const waiter = pool.waiters.shift()
    if (waiter) {
      pool.busy++
      return waiter(container)
    }
    pool.idle.unshift(container)
    this.idleSince.set(container, this.now())
    this.trim(pool)
    this.changed(pool)
  }

  /** Settles the waits of a pool that will serve them no container (drained, closed, backing off). */
  private release(pool: Pool<C, S>): void {
    for (const waiter of pool.waiters.splice(0)) waiter(undefined)
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
    const surplus = Math.min(pool.idle.length, this.size(pool) - pool.prestart)
    if (surplus > 0) void this.discard(pool.idle.splice(pool.idle.length - surplus, surplus))
  }

  private onExit(pool: Pool<C, S>, container: C): void {
    this.exited.add(container)
    const starting = pool.starting.indexOf(container)
    const index = pool.idle.indexOf(container)
    // Taken (the call removes it) or already being removed: nothing to do.
    if (index < 0 && starting < 0) return
    // Exited before any input: the image is missing, the process does not wait for stdin... Calls run fresh, and report it as today.
    if (index >= 0) pool.idle.splice(index, 1)
    if (starting >= 0) pool.starting.splice(starting, 1)
    this.failed(pool)
    this.changed(pool)
    void this.discard([container])
    if (pool.reuse) this.grow(pool)
  }

  private failed(pool: Pool<C, S>): void {
    pool.failures++
    pool.retryAt = this.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (pool.failures - 1))
  }

  private dropPool(pool: Pool<C, S>): void {
    void this.discard(pool.idle.splice(0))
    this.changed(pool)
    if (pool.running === 0) {
      this.pools.delete(pool.key)
      this.release(pool)
    }
  }

  private changed(pool: Pool<C, S>): void {
    this.options.onFree?.(pool.function)
  }

  /**
   * Removes containers and waits for their docker CLIs to exit. A container still being created
   * when `docker rm` runs is not found, and would then start: so remove again until each has exited.
   */
  private discard(containers: C[]): Promise<void> {
    if (containers.length === 0) return Promise.resolve()
    for (const container of containers) container.close?.()
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
