import type {Clock} from '../../src/runtime/worker/clock.js'

/** A clock that moves only when the test says: advance() runs the timers that fall due, in order. */
export class FakeClock implements Clock {
  private time = 0
  private timers: Array<{at: number; fn: () => void}> = []

  now(): number {
    return this.time
  }

  after(ms: number, fn: () => void): () => void {
    const timer = {at: this.time + ms, fn}
    this.timers.push(timer)
    return () => {
      this.timers = this.timers.filter((t) => t !== timer)
    }
  }

  /** Timers set and not yet run nor cancelled. */
  get pending(): number {
    return this.timers.length
  }

  advance(ms: number): void {
    this.time += ms
    const due = this.timers.filter((t) => t.at <= this.time).sort((a, b) => a.at - b.at)
    this.timers = this.timers.filter((t) => t.at > this.time)
    for (const timer of due) timer.fn()
  }
}
