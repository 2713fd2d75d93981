/**
 * POSTs the record of each finished asynchronous call that asked for it to its callback URL
 * (docs/async.md). Workers queue one message per callback on AMP_CALLBACKS; every listener pulls
 * from the shared consumer, so each callback is sent by one listener, and again (with backoff) until
 * the receiver answers 2xx or CALLBACK_ATTEMPTS are spent.
 */
import type {JsMsg} from '@nats-io/jetstream'
import {request} from 'undici'

import type {AsyncCalls} from './async-calls.js'
import {CALLBACK_ATTEMPTS, CALLBACK_CONSUMER, CALLBACK_STREAM, type StoredCall} from '../shared/async-store.js'
import type {Logger} from '../shared/logger.js'
import {PullLoop} from '../shared/pull-loop.js'

export interface CallbackOptions {
  /** How long a receiver has to answer. */
  timeoutMs?: number
  /** First retry delay; each next one is 4 times longer. */
  retryBaseMs?: number
  /** Callbacks sent at once by this listener. */
  concurrency?: number
}

export class CallbackSender {
  private readonly loop: PullLoop
  private readonly sending = new Set<Promise<void>>()
  private readonly timeoutMs: number
  private readonly retryBaseMs: number
  private readonly concurrency: number

  constructor(
    private readonly calls: Pick<AsyncCalls, 'open' | 'publicRecord'>,
    private readonly log: Logger,
    options: CallbackOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000
    this.retryBaseMs = options.retryBaseMs ?? 2000
    this.concurrency = options.concurrency ?? 8
    this.loop = new PullLoop({
      consumer: async () => (await this.calls.open()).js.consumers.get(CALLBACK_STREAM, CALLBACK_CONSUMER),
      hasRoom: () => this.sending.size < this.concurrency,
      roomFreed: () => Promise.race(this.sending),
      take: async (msg) => {
        const task: Promise<void> = this.send(msg)
          .catch((error: Error) => this.log.warn('callback failed', {error: error.message}))
          .finally(() => this.sending.delete(task))
        this.sending.add(task)
      },
      // JetStream away or not set up: the async API says so to callers; here, just try again later.
      onPullError: () => {},
      expiresMs: 5000,
      retryMs: 2000,
    })
  }

  start(): void {
    this.loop.start()
  }

  /** Stops pulling and waits for the callbacks being sent. */
  async close(): Promise<void> {
    this.loop.stop()
    await Promise.allSettled([...this.sending])
  }

  private async send(msg: JsMsg): Promise<void> {
    const {callId} = msg.json<{callId: string}>()
    const store = await this.calls.open()
    const found = await store.getRecord(callId)
    if (!found?.record.callbackUrl) {
      msg.ack() // expired, or never asked for one
      return
    }
    const stored = found.record
    const attempt = msg.info.deliveryCount
    const url = stored.callbackUrl!
    let status: number | undefined
    let error: string | undefined
    try {
      const body = JSON.stringify(await this.calls.publicRecord(store, stored))
      const answer = await request(url, {
        method: 'POST',
        headers: {'content-type': 'application/json', 'amp-call-id': callId, 'amp-call-state': stored.state},
        body,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        maxRedirections: 0,
      } as Parameters<typeof request>[1])
      status = answer.statusCode
      await answer.body.dump()
      if (status < 200 || status > 299) error = `the receiver answered ${status}`
    } catch (failure) {
      error = `could not POST to the callback URL: ${(failure as Error).message}`
    }
    const done = !error || attempt >= CALLBACK_ATTEMPTS
    const callback: NonNullable<StoredCall['callback']> = {
      state: !error ? 'delivered' : done ? 'failed' : 'pending',
      attempts: attempt,
      ...(status === undefined ? {} : {status}),
      ...(error ? {error} : {}),
    }
    await store.putRecord({...stored, callback})
    const log = this.log.child({call: callId, fn: stored.function})
    if (done) {
      if (error) log.warn('callback given up', {attempts: attempt, error})
      else log.info('callback delivered', {status, attempts: attempt})
      msg.ack()
    } else {
      const delay = this.retryBaseMs * 4 ** (attempt - 1)
      log.info('callback failed: trying again', {attempt, delayMs: delay, error})
      msg.nak(delay)
    }
  }
}
