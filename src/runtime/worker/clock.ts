/** Time as the worker reads it: the real one, or a test's that it moves itself. */
export interface Clock {
  now(): number
  /** Calls `fn` once after `ms`, as setTimeout does (the timer keeps the process up); returns what cancels it. */
  after(ms: number, fn: () => void): () => void
}

export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms)
    return () => clearTimeout(timer)
  },
}
