/**
 * Queueing an async call while a JetStream cluster elects leaders: when a NATS node dies, the
 * streams it led elect new ones within seconds, and meanwhile their requests get no responders
 * (which nats.js reports as "jetstream is not enabled") or time out. Those writes are tried again
 * until a deadline; on a server without JetStream, no responders is final at once.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import {isNoResponders} from '../shared/nats.js'

export interface StoreRetry {
  /** Give up once this time (ms since the epoch) would pass before the next try. */
  deadline: number
  /** The connected server has JetStream (its INFO says so): no responders then means no leader yet. */
  jetStream: boolean
  /** The pause between tries. */
  retryMs: number
  now?: () => number
  wait?: (ms: number) => Promise<unknown>
}

/** Runs a JetStream write again while JetStream has no leader to answer it, until the deadline. */
export async function untilStored<T>(write: () => Promise<T>, retry: StoreRetry): Promise<T> {
  const now = retry.now ?? Date.now
  const wait = retry.wait ?? sleep
  for (;;) {
    try {
      return await write()
    } catch (error) {
      const leaderless = (retry.jetStream && isNoResponders(error)) || (error as Error)?.name === 'TimeoutError'
      if (!leaderless || now() + retry.retryMs >= retry.deadline) throw error
      await wait(retry.retryMs)
    }
  }
}
