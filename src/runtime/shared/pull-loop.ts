/**
 * Pulling from a JetStream consumer one message at a time, only while there is room to take it, and
 * stopping at once on shutdown: the loop the worker runs for asynchronous calls and the listener for
 * callbacks.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import type {Consumer, ConsumerMessages, JsMsg} from '@nats-io/jetstream'

/**
 * Pulls messages one at a time, like Consumer.next(), but a daemon shutting down can end the
 * wait at once instead of after the pull's expiry. A message that reaches an ended pull stays
 * unacked, and JetStream delivers it again after the consumer's ack wait.
 */
export class SinglePull {
  private batch?: ConsumerMessages
  private aborted = false

  async next(consumer: Consumer, expiresMs: number): Promise<JsMsg | null> {
    if (this.aborted) return null
    const batch = await consumer.fetch({max_messages: 1, expires: expiresMs})
    this.batch = batch
    // Aborted while the pull was being set up: end it now, not at its expiry.
    if (this.aborted) void batch.close()
    try {
      for await (const msg of batch) return msg
      return null
    } finally {
      this.batch = undefined
    }
  }

  abort(): void {
    this.aborted = true
    void this.batch?.close()
  }
}

export interface PullLoopOptions {
  /** The consumer to pull from; asked again after a failed pull (JetStream may have been set up anew). */
  consumer: () => Promise<Consumer>
  /** True when one more message can be taken now. */
  hasRoom: () => boolean
  /** Resolves when there may be room again. */
  roomFreed: () => Promise<unknown>
  /** Takes one message; the next pull waits until what it returns resolves. */
  take: (msg: JsMsg) => Promise<void>
  /** Told why a pull failed; the loop tries again after retryMs. */
  onPullError: (error: Error) => void
  /** How long one pull waits for a message. */
  expiresMs: number
  /** The pause after a failed pull. */
  retryMs: number
}

export class PullLoop {
  private loop?: Promise<void>
  private readonly pulling = new SinglePull()
  /** Ends the pause after a failed pull, and the wait for room, at once on stop(). */
  private readonly pause = new AbortController()
  private readonly stopping = new Promise<void>((resolve) => this.pause.signal.addEventListener('abort', () => resolve()))

  constructor(private readonly options: PullLoopOptions) {}

  start(): void {
    this.loop ??= this.run()
  }

  /**
   * Stops pulling; what was taken goes on. Does not wait for the loop: after a NATS restart it may
   * sit in a JetStream request (up to its 5 s timeout), and once stopped it takes nothing more (a
   * message that still arrives is handed back, for another daemon).
   */
  stop(): void {
    this.pause.abort()
    this.pulling.abort()
  }

  private get stopped(): boolean {
    return this.pause.signal.aborted
  }

  private async run(): Promise<void> {
    const {options} = this
    let consumer: Consumer | undefined
    while (!this.stopped) {
      if (!options.hasRoom()) {
        await Promise.race([options.roomFreed(), this.stopping])
        continue
      }
      let msg: JsMsg | null
      try {
        consumer ??= await options.consumer()
        msg = await this.pulling.next(consumer, options.expiresMs)
      } catch (error) {
        if (this.stopped) break
        options.onPullError(error as Error)
        consumer = undefined
        await sleep(options.retryMs, undefined, {signal: this.pause.signal}).catch(() => {})
        continue
      }
      if (!msg) continue
      if (this.stopped) {
        msg.nak()
        break
      }
      await options.take(msg)
    }
  }
}
