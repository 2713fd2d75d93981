import {type Clock, realClock} from './clock.js'

/** How long slotFreed() waits at most: a slot may free without a release (a sync call that left the queue). */
const FREED_SAFETY_NET_MS = 1000

/**
 * The worker's container slots, one per container it runs at once: calls past them wait in line,
 * first come first served. Made before the container runner, which asks it whether there is room
 * to pre-start one more container.
 */
export class Slots {
  private running = 0
  private readonly waiting: Array<() => void> = []
  /** Woken at each release: the asynchronous puller waits there for room. */
  private freedWaiters: Array<() => void> = []
  private draining = false

  constructor(
    private readonly concurrency: number,
    private readonly clock: Clock = realClock,
  ) {}

  /** Slots held by calls now. */
  get used(): number {
    return this.running
  }

  /**
   * A slot: `slot` resolves true once the call holds one. `leave()` takes a call that is still
   * waiting out of the line (its caller is gone), so it frees its backlog place at once; `slot`
   * then resolves false.
   */
  acquire(): {slot: Promise<boolean>; leave: () => void} {
    if (this.running < this.concurrency) {
      this.running++
      return {slot: Promise.resolve(true), leave: () => {}}
    }
    let settle!: (got: boolean) => void
    const slot = new Promise<boolean>((resolve) => (settle = resolve))
    const waiter = () => settle(true)
    this.waiting.push(waiter)
    const leave = () => {
      const index = this.waiting.indexOf(waiter)
      if (index < 0) return
      this.waiting.splice(index, 1)
      settle(false)
    }
    return {slot, leave}
  }

  /** Gives a held slot to the first call waiting, or back. */
  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.running--
    for (const wake of this.freedWaiters.splice(0)) wake()
  }

  /**
   * A slot free beyond `starting` (pre-started containers still starting: a start costs the engine
   * as much as a call), no call waiting, and the worker not draining.
   */
  hasFreeSlot(starting = 0): boolean {
    return this.running + starting < this.concurrency && this.waiting.length === 0 && !this.draining
  }

  /** Resolves at the next release, or after FREED_SAFETY_NET_MS at the latest. */
  slotFreed(): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.clock.after(FREED_SAFETY_NET_MS, resolve)
      this.freedWaiters.push(() => {
        cancel()
        resolve()
      })
    })
  }

  /** The worker drains: from now on no slot counts as free (nothing more is pre-started or pulled); calls in line still get theirs. */
  drain(): void {
    this.draining = true
  }
}
