/**
 * The listener's copy of the function registry, kept current by an etcd watch, so that calls to
 * functions it knows keep working while etcd is unreachable.
 *
 * It reads every function with the revision of that read, then watches from the next revision.
 * When the watch breaks (etcd stopped, the listener cut off, the revision compacted) it keeps what
 * it has for calls, reports itself out of sync, and reads everything again until that works: a
 * function removed or changed meanwhile is dropped or replaced by that full read, never served
 * stale once the listener is back in touch with etcd.
 */
import type {StoredFunction} from '../shared/function-spec.js'
import type {Logger} from '../shared/logger.js'
import type {Registry} from './registry.js'
import {etcdProblem, RegistryUnavailableError} from './registry-unavailable.js'

/** What a change stream reports (Registry.follow). */
export interface FunctionWatch {
  put(spec: StoredFunction): void
  delete(name: string): void
  /** The stream is over (broken or cancelled); nothing more comes. */
  lost(error: Error): void
}

/** Where the functions live: etcd in production (Registry), a fake in unit tests. */
export interface FunctionSource {
  snapshot(): Promise<{specs: StoredFunction[]; revision: string}>
  follow(revision: string, on: FunctionWatch): {stop(): void}
}

export interface FunctionCacheOptions {
  logger?: Logger
  /** First and longest wait between two attempts to read everything again. */
  retryMinMs?: number
  retryMaxMs?: number
}

const NEVER_READ = 'not read from etcd yet'

export class FunctionCache {
  private specs = new Map<string, StoredFunction>()
  private inSync = false
  /** Bumped on every resync: events of an older watch are ignored. */
  private generation = 0
  private watch?: {stop(): void}
  private retryMs: number
  private retryTimer?: NodeJS.Timeout
  private closed = false
  /** Why it is out of sync, for error messages and logs. */
  private reason = NEVER_READ

  constructor(private readonly source: FunctionSource, private readonly options: FunctionCacheOptions = {}) {
    this.retryMs = options.retryMinMs ?? 100
  }

  /** Reads everything once; if that fails, keeps trying in the background (never throws). */
  async start(): Promise<void> {
    await this.sync()
  }

  /** True while the cache holds what etcd holds (read done, watch following). */
  get synced(): boolean {
    return this.inSync
  }

  /** The function as last known, in sync or not; undefined when not known. */
  lookup(name: string): StoredFunction | undefined {
    return this.specs.get(name)
  }

  /** Throws the 503 to answer when etcd is known to be out of reach (so callers need not wait for a deadline). */
  assertReachable(): void {
    if (this.inSync) return
    throw new RegistryUnavailableError(this.reason, {
      suggestions: ['check that etcd is running and that the listener reaches it; the listener reconnects by itself'],
    })
  }

  close(): void {
    this.closed = true
    this.generation++
    clearTimeout(this.retryTimer)
    this.watch?.stop()
    this.inSync = false
  }

  private async sync(): Promise<void> {
    const generation = ++this.generation
    try {
      const {specs, revision} = await this.source.snapshot()
      if (generation !== this.generation) return
      this.specs = new Map(specs.map((spec) => [spec.name, spec]))
      const current = () => generation === this.generation
      this.watch = this.source.follow(revision, {
        put: (spec) => current() && this.specs.set(spec.name, spec),
        delete: (name) => current() && this.specs.delete(name),
        lost: (error) => current() && this.lose(`lost the watch on etcd (${etcdProblem(error)}); reconnecting`),
      })
      const recovered = this.reason !== NEVER_READ
      this.inSync = true
      this.retryMs = this.options.retryMinMs ?? 100
      if (recovered) this.options.logger?.info('etcd is back: function cache read again', {functions: this.specs.size, revision})
    } catch (error) {
      if (generation !== this.generation) return
      // Without the registry's "function registry (etcd) unavailable: ", which assertReachable says once.
      this.reason = `cannot read functions from etcd (${etcdProblem(error)}); retrying`
      this.retry()
    }
  }

  private lose(reason: string): void {
    this.generation++
    this.watch?.stop()
    this.watch = undefined
    this.inSync = false
    this.reason = reason
    this.options.logger?.warn('lost etcd: serving the functions already known until it is back', {functions: this.specs.size})
    this.retry()
  }

  private retry(): void {
    if (this.closed) return
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => void this.sync(), this.retryMs)
    this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs ?? 2000)
  }
}

export type RegistryApi = Pick<Registry, 'get' | 'list' | 'put' | 'remove' | 'update'>

/**
 * The function API's registry: while the cache knows etcd is out of reach, each operation answers
 * 503 at once instead of waiting for the etcd deadline; otherwise it goes to etcd as usual.
 */
export function failFast(registry: RegistryApi, cache: Pick<FunctionCache, 'assertReachable'>): RegistryApi {
  return {
    get: async (name) => (cache.assertReachable(), registry.get(name)),
    list: async () => (cache.assertReachable(), registry.list()),
    put: async (spec, replace) => (cache.assertReachable(), registry.put(spec, replace)),
    update: async (name, patch) => (cache.assertReachable(), registry.update(name, patch)),
    remove: async (name) => (cache.assertReachable(), registry.remove(name)),
  }
}
