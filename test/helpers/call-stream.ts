/**
 * A steady stream of calls for fault tests: `callers` loops, each bound to one listener URL, each
 * posting a unique input to an echoing function (cat, slow) until stopped, and recording what it got.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {request} from 'undici'

export interface CallRecord {
  /** The listener the call was sent to. */
  url: string
  input: string
  /** HTTP status; undefined when the connection failed (refused, reset). */
  status?: number
  body?: string
  /** The worker that ran it (Amp-Worker), when it ran. */
  worker?: string
  /** The connection error's code or message, when there was no answer. */
  error?: string
  /** Refused, and sent again to another listener (see `failover`). */
  failedOver?: boolean
  startedAt: number
  endedAt: number
}

/** True when the answer is the function's own echo of the input. */
export const echoed = (record: CallRecord): boolean => record.status === 200 && record.body === record.input

/** The calls as their callers saw them in the end: every attempt but those sent again elsewhere. */
export const answers = (records: CallRecord[]): CallRecord[] => records.filter((record) => !record.failedOver)

export interface CallStream {
  /** Every call so far, answered or not, in the order they ended. */
  readonly records: CallRecord[]
  /** Calls sent and not answered yet. */
  readonly inFlight: ReadonlyMap<string, {url: string; startedAt: number}>
  /** Stops starting calls, waits for those in flight and returns every record. */
  stop(): Promise<CallRecord[]>
}

export interface CallStreamOptions {
  /** Listener URLs; caller i sends to urls[i % urls.length]. */
  urls: string[]
  fn: string
  callers: number
  /**
   * Act as a load balancer: a call refused without being taken (connection refused, or 503) is sent
   * again to the next URL, and the refused attempt is marked `failedOver`.
   */
  failover?: boolean
  /** Pause after a call that got no answer, so a dead listener is not hammered. */
  pauseAfterErrorMs?: number
}

export function startCallStream(options: CallStreamOptions): CallStream {
  const records: CallRecord[] = []
  const inFlight = new Map<string, {url: string; startedAt: number}>()
  let stopped = false
  let seq = 0
  const loop = async (caller: number) => {
    let tries = 0
    let input = ''
    while (!stopped || tries > 0) {
      const url = options.urls[(caller + tries) % options.urls.length]
      if (tries === 0) input = `caller ${caller} call ${seq++} ${Math.random().toString(36).slice(2)}`
      const record: CallRecord = {url, input, startedAt: Date.now(), endedAt: 0}
      inFlight.set(input, {url, startedAt: record.startedAt})
      try {
        const res = await request(`${url}/${options.fn}`, {method: 'POST', body: input})
        record.status = res.statusCode
        record.body = await res.body.text()
        if (typeof res.headers['amp-worker'] === 'string') record.worker = res.headers['amp-worker']
      } catch (error) {
        record.error = (error as NodeJS.ErrnoException).code ?? (error as Error).message
      }
      record.endedAt = Date.now()
      inFlight.delete(input)
      records.push(record)
      const refused = record.error === 'ECONNREFUSED' || record.status === 503
      record.failedOver = options.failover === true && refused && ++tries < options.urls.length
      if (!record.failedOver) tries = 0
      if (record.error && !record.failedOver) await sleep(options.pauseAfterErrorMs ?? 50)
    }
  }
  const loops = Array.from({length: options.callers}, (_, caller) => loop(caller))
  return {
    records,
    inFlight,
    async stop() {
      stopped = true
      await Promise.all(loops)
      return records
    },
  }
}
