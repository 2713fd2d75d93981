/**
 * Mixed, bounded load on the cluster's listeners: sync callers in loops and async calls at a steady
 * rate, each with its own input, every answer checked against it (the function is `cat`). The
 * callers act as a load balancer in front of the listeners would: round robin, and a listener that
 * refuses the connection (nothing was sent) is skipped for the next one.
 */
import {randomBytes} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'
import {Agent, request} from 'undici'

export interface SyncOutcome {
  listener: string
  sentAt: number
  endedAt: number
  /** HTTP status, or `reset` when the connection broke mid-call, `timeout` when no answer came in time. */
  status: number | 'reset' | 'timeout'
  /** 200 with exactly the input as body. */
  ok: boolean
  detail?: string
}

export interface AsyncOutcome {
  callId?: string
  input: string
  sentAt: number
  /** 202: JetStream has it; anything else was refused (the caller knows, nothing to lose). */
  status: number | 'reset' | 'timeout'
  /** Why it was refused: the answer's body. */
  detail?: string
}

export interface AsyncCheck {
  /** Accepted calls that never succeeded with their own input as output. */
  lost: Array<{callId: string; why: string}>
  /** Accepted calls that ran more than once (attempts > 1). */
  twice: string[]
}

const CALL_TIMEOUT_MS = 45_000

export class MixedLoad {
  readonly sync: SyncOutcome[] = []
  readonly async: AsyncOutcome[] = []
  private running = false
  private loops: Array<Promise<void>> = []
  private next = 0
  private readonly agent = new Agent({connections: 64, headersTimeout: CALL_TIMEOUT_MS, bodyTimeout: CALL_TIMEOUT_MS, connectTimeout: 2000})

  constructor(
    private readonly listeners: string[],
    private readonly fn: string,
    private readonly options: {syncCallers: number; asyncEveryMs: number},
  ) {}

  start(): void {
    this.running = true
    for (let i = 0; i < this.options.syncCallers; i++) this.loops.push(this.syncLoop(i))
    this.loops.push(this.asyncLoop())
  }

  /** Stops starting calls and waits for those under way. */
  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
    this.loops = []
  }

  async close(): Promise<void> {
    await this.agent.close()
  }

  private async syncLoop(caller: number): Promise<void> {
    for (let n = 0; this.running; n++) {
      const input = `sync ${caller} ${n} ${randomBytes(6).toString('hex')}\n`
      const outcome = await this.send(input, {})
      this.sync.push({...outcome, ok: outcome.status === 200 && outcome.body === input, detail: outcome.status === 200 ? undefined : outcome.body?.slice(0, 200)})
    }
  }

  private async asyncLoop(): Promise<void> {
    const sending: Array<Promise<void>> = []
    for (let n = 0; this.running; n++) {
      const input = `async ${n} ${randomBytes(6).toString('hex')}\n`
      const sentAt = Date.now()
      sending.push(
        this.send(input, {prefer: 'respond-async'}).then((outcome) => {
          const callId = outcome.status === 202 ? (JSON.parse(outcome.body ?? '{}') as {callId?: string}).callId : undefined
          this.async.push({callId, input, sentAt, status: outcome.status, ...(outcome.status === 202 ? {} : {detail: outcome.body?.slice(0, 300)})})
        }),
      )
      await sleep(this.options.asyncEveryMs)
    }
    await Promise.all(sending)
  }

  /** One call through the "load balancer": round robin, skipping listeners that refuse the connection. */
  private async send(input: string, headers: Record<string, string>): Promise<Omit<SyncOutcome, 'ok'> & {body?: string}> {
    const sentAt = Date.now()
    let listener = ''
    for (let tried = 0; tried < this.listeners.length * 2; tried++) {
      listener = this.listeners[this.next++ % this.listeners.length]
      try {
        const response = await request(`${listener}/${this.fn}`, {method: 'POST', body: input, headers, dispatcher: this.agent})
        const body = await response.body.text()
        return {listener, sentAt, endedAt: Date.now(), status: response.statusCode, body}
      } catch (error) {
        const code = (error as {code?: string}).code ?? ''
        // Nothing reached a listener: an LB would take the next one.
        if (['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) continue
        const status = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'timeout' : 'reset'
        return {listener, sentAt, endedAt: Date.now(), status, body: `${code} ${(error as Error).message}`}
      }
    }
    return {listener, sentAt, endedAt: Date.now(), status: 'reset', body: 'no listener took the connection'}
  }

  /** Waits until every accepted async call is final (or `withinMs` passed), and checks each one's output. */
  async checkAsync(withinMs = 180_000): Promise<AsyncCheck> {
    const accepted = this.async.filter((call) => call.status === 202 && call.callId)
    const pending = new Map(accepted.map((call) => [call.callId!, call]))
    const lost: AsyncCheck['lost'] = []
    const twice: string[] = []
    const deadline = Date.now() + withinMs
    while (pending.size > 0 && Date.now() < deadline) {
      // All at once: right after a JetStream failover one read may take the listener's 30 s read
      // deadline (a blob read whose consumer waits on a replica still catching up), and one after the other
      // those would add up past the check's window.
      const read = await Promise.all([...pending].map(async ([callId, call]) => ({callId, call, record: await this.record(callId)})))
      for (const {callId, call, record} of read) {
        if (!record || (record.state !== 'succeeded' && record.state !== 'failed')) continue
        pending.delete(callId)
        const stdout = record.result ? Buffer.from(record.result.stdout, 'base64').toString() : undefined
        if (record.state !== 'succeeded' || stdout !== call.input) lost.push({callId, why: `${record.state}: ${record.error ?? JSON.stringify(stdout)}`})
        if (record.attempts > 1) twice.push(callId)
      }
      if (pending.size > 0) await sleep(500)
    }
    for (const callId of pending.keys()) {
      // What each listener says, to tell a call that never ran from a listener reading a stale copy.
      const seen = await Promise.all(this.listeners.map(async (listener) => `${listener}: ${(await this.record(callId, listener))?.state ?? 'unreadable'}`))
      lost.push({callId, why: `not final in time (${seen.join(', ')})`})
    }
    return {lost, twice}
  }

  private async record(callId: string, only?: string): Promise<{state: string; attempts: number; error?: string; result?: {stdout: string}} | undefined> {
    for (let tried = 0; tried < this.listeners.length; tried++) {
      const listener = only ?? this.listeners[this.next++ % this.listeners.length]
      try {
        const response = await request(`${listener}/_amp/v1/calls/${callId}`, {dispatcher: this.agent})
        const text = await response.body.text()
        if (response.statusCode === 200) return JSON.parse(text)
      } catch {
        // The other listener, or the next round.
      }
      if (only) break
    }
    return undefined
  }
}
