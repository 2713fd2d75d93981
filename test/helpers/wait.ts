import {setTimeout as sleep} from 'node:timers/promises'

/**
 * Polls `probe` until it returns something other than undefined, and returns that. The bound is
 * generous: it only keeps a broken test from hanging, and names `what` when it runs out.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, withinMs = 20_000, everyMs = 100): Promise<T> {
  const until = Date.now() + withinMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}
