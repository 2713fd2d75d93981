/**
 * Liveness and readiness of the daemons. Live: the process serves HTTP. Ready: every dependency
 * answers (NATS connected, etcd or docker reachable) and the daemon is not draining. Load balancers
 * and systemd-style supervisors read readiness to send work only where it can be done.
 */
import type {NatsConnection} from './nats.js'

export interface ReadinessReport {
  ready: boolean
  /** The JSON body of /health/ready: {"status": "ok" | "unavailable" | "draining", "checks": {...}}. */
  body: {status: 'ok' | 'unavailable' | 'draining'; checks: Record<string, boolean>}
}

export type Check = () => boolean | Promise<boolean>

/**
 * Runs every check (a check that throws counts as false). `draining` is reported as is and makes
 * the daemon not ready; every other check must be true.
 */
export async function checkReadiness(checks: Record<string, Check>, draining: () => boolean): Promise<ReadinessReport> {
  const names = Object.keys(checks)
  const values = await Promise.all(names.map(async (name) => {
    try {
      return Boolean(await checks[name]())
    } catch {
      return false
    }
  }))
  const results: Record<string, boolean> = Object.fromEntries(names.map((name, i) => [name, values[i]]))
  const isDraining = draining()
  const status = isDraining ? 'draining' : values.every(Boolean) ? 'ok' : 'unavailable'
  return {ready: status === 'ok', body: {status, checks: {...results, draining: isDraining}}}
}

export interface CachedCheckOptions {
  /** An answer younger than this is reused. */
  maxAgeMs?: number
  /** A check still running after this counts as false (a hung etcd must not hang the probe). */
  timeoutMs?: number
  now?: () => number
}

/**
 * Wraps a slow check (a network round trip, a process): the answer is reused while it is fresh, and
 * concurrent probes share one check in progress.
 */
export function cachedCheck(check: () => Promise<boolean>, options: CachedCheckOptions = {}): () => Promise<boolean> {
  return cachedRead(() => check().then(Boolean), false, options)
}

/** cachedCheck for any value: `fallback` stands for a read that fails or takes too long. */
export function cachedRead<T>(read: () => Promise<T>, fallback: T, options: CachedCheckOptions = {}): () => Promise<T> {
  const maxAge = options.maxAgeMs ?? 2000
  const timeout = options.timeoutMs ?? 1500
  const now = options.now ?? Date.now
  let last: {value: T; at: number} | undefined
  let running: Promise<T> | undefined
  return () => {
    if (last && now() - last.at < maxAge) return Promise.resolve(last.value)
    running ??= (async () => {
      let timer: NodeJS.Timeout | undefined
      const expired = new Promise<T>((resolve) => {
        timer = setTimeout(() => resolve(fallback), timeout)
        timer.unref()
      })
      try {
        const value = await Promise.race([read().catch(() => fallback), expired])
        last = {value, at: now()}
        return value
      } finally {
        clearTimeout(timer)
        running = undefined
      }
    })()
    return running
  }
}

export interface NatsTracker {
  connected(): boolean
  /** Runs `listener` on each disconnect, so requests already out can be failed at once. */
  onDisconnect(listener: () => void): void
}

/** Follows a NATS connection's status events; `connected()` is false from a disconnect until the reconnect. */
export function trackNats(nc: NatsConnection): NatsTracker {
  let connected = !nc.isClosed()
  const listeners: Array<() => void> = []
  void (async () => {
    try {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect' || status.type === 'close') {
          if (connected) for (const listener of listeners) listener()
          connected = false
        } else if (status.type === 'reconnect') connected = true
      }
    } catch {
      // The iterator ends or fails only when the connection closes.
    }
    connected = false
  })()
  return {connected: () => connected && !nc.isClosed(), onDisconnect: (listener) => listeners.push(listener)}
}
