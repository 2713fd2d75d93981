import {setTimeout as sleep} from 'node:timers/promises'

/** What a wait is for; a function is asked when the wait runs out, so it can tell the last state it saw. */
export type WaitingFor = string | (() => string)

/**
 * Polls `probe` until it returns something other than undefined, and returns that. The bound is
 * generous: it only keeps a broken test from hanging, and names `what` when it runs out.
 */
export async function waitFor<T>(what: WaitingFor, probe: () => Promise<T | undefined>, withinMs = 20_000, everyMs = 100): Promise<T> {
  const until = Date.now() + withinMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > until) throw new Error(`timed out after ${withinMs} ms waiting for ${typeof what === 'string' ? what : what()}`)
    await sleep(everyMs)
  }
}

/** waitFor for a condition: polls `check` until it holds. */
export async function waitUntil(what: WaitingFor, check: () => boolean | Promise<boolean>, withinMs = 20_000, everyMs = 100): Promise<void> {
  await waitFor(what, async () => ((await check()) ? true : undefined), withinMs, everyMs)
}
