import type {Subscription} from '@nats-io/transport-node'

import {warmSubject} from '../shared/protocol.js'

/** How long a worker stays on a function's warm subject once it has no free container of it. */
const WARM_LINGER_MS = 25

/**
 * The `amp.v1.warm.<fn>` subscriptions, held while this worker has a free container of that
 * function up (and WARM_LINGER_MS after): listeners offer a call there first (protocol.ts), so it
 * goes to a worker that has a container ready. Made before the container runner, which tells it
 * each change (freeChanged); it joins subjects once start() gave it the connection.
 */
export class WarmSubjects {
  private readonly subs = new Map<string, {sub: Subscription; leaving?: NodeJS.Timeout}>()
  private subscribe?: (subject: string) => Subscription
  private closed = false

  constructor(private readonly lingerMs = WARM_LINGER_MS) {}

  /** `subscribe` joins a subject in the workers' queue group, its calls taken as any other. */
  start(subscribe: (subject: string) => Subscription): void {
    this.subscribe = subscribe
  }

  /** The functions whose warm subject this worker is on now. */
  get functions(): string[] {
    return [...this.subs.keys()]
  }

  /**
   * The number of a function's free containers that are up changed: while it is above 0 this
   * worker takes that function's calls on its warm subject too. Called before the result of the
   * call that freed one is sent, so NATS has the subscription before the caller can send its next call.
   */
  freeChanged(fn: string, free: number): void {
    if (!this.subscribe) return
    const warm = this.subs.get(fn)
    if (free > 0) {
      clearTimeout(warm?.leaving)
      if (warm) warm.leaving = undefined
      else if (!this.closed) this.subs.set(fn, {sub: this.subscribe(warmSubject(fn))})
    } else if (warm && !warm.leaving) {
      // Under load a warm container is free again within milliseconds: leaving and joining at each call would cost NATS more than the call.
      warm.leaving = setTimeout(() => {
        this.subs.delete(fn)
        // Drained, not unsubscribed: a call NATS routed here before it saw the UNSUB still arrives, and runs (queued, or cold).
        void warm.sub.drain().catch(() => {})
      }, this.lingerMs)
      warm.leaving.unref()
    }
  }

  /** Leaves every warm subject (drained: the calls already routed here still arrive) and joins none again. */
  close(): Promise<void> {
    this.closed = true
    const drained = [...this.subs.values()].map(({sub, leaving}) => {
      clearTimeout(leaving)
      return sub.drain().catch(() => {})
    })
    this.subs.clear()
    return Promise.all(drained).then(() => {})
  }
}
