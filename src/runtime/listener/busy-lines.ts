/** A call's place in its function's line of calls that found every worker busy. */
export interface LinePlace {
  /**
   * Resolves true once this call is first in its line (at once if it is), false when `ms` passed
   * or `stop` settled (the call ended) before that.
   */
  turn(ms: number, stop: Promise<unknown>): Promise<boolean>
  /** Takes the call out of the line; the next one, if this was first, has its turn at once. */
  leave(): void
}

/**
 * The calls of one listener that wait for a worker with room, one line per function in order of
 * arrival. Only the first of a line offers its call again, and a call that arrives while others of
 * its function wait goes behind them: so calls are served about first come first served (each
 * worker's own backlog is first come first served too), and a waiting line costs one offer at a time.
 */
export class BusyLines {
  private readonly lines = new Map<string, Array<() => void>>()

  /** Whether calls of `fn` wait in line now. */
  waiting(fn: string): boolean {
    return this.lines.has(fn)
  }

  join(fn: string): LinePlace {
    const line = this.lines.get(fn) ?? []
    this.lines.set(fn, line)
    let becameFirst!: () => void
    const first = new Promise<void>((resolve) => (becameFirst = resolve))
    line.push(becameFirst)
    if (line.length === 1) becameFirst()
    return {
      turn: (ms, stop) => firstOf(first, ms, stop),
      leave: () => {
        const index = line.indexOf(becameFirst)
        if (index < 0) return
        line.splice(index, 1)
        if (line.length === 0) this.lines.delete(fn)
        else if (index === 0) line[0]()
      },
    }
  }
}

/** Waits `ms`, or less when `stop` settles first (the call ended). */
export async function pause(ms: number, stop: Promise<unknown>): Promise<void> {
  await firstOf(new Promise<void>(() => {}), ms, stop)
}

/** True when `first` resolves before `ms` pass and before `stop` settles. */
function firstOf(first: Promise<void>, ms: number, stop: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const givenUp = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms))
    stop.then(
      () => resolve(false),
      () => resolve(false),
    )
  })
  return Promise.race([first.then(() => true), givenUp]).finally(() => clearTimeout(timer))
}
