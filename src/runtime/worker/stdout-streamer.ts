/**
 * The worker's side of a streamed call (docs/protocol.md "Streaming"): sends the container's stdout
 * to the listener as it is written, one `stdout` event in flight at a time. The listener's ack is
 * the flow control: what the container writes while an event waits for its ack is coalesced into
 * the next one (up to the chunk size), so a fast writer makes few large events and a slow one
 * gets each write out at once.
 */

export interface StdoutStreamerOptions {
  /** Sends one `stdout` event and resolves once the listener acked it; rejects when it cannot. */
  send: (chunk: Uint8Array, seq: number) => Promise<void>
  /** Largest event payload (protocol chunk size). */
  chunkSize: number
  /** Bytes past this are not sent (the runner fails such a call: output limit). */
  maxBytes: number
  /** Called once when a send fails; nothing more is sent after that. */
  onError?: (error: Error) => void
}

export class StdoutStreamer {
  /** Bytes taken for sending (the result's Amp-Stdout-Size): a failed send shows up as a size mismatch. */
  taken = 0
  private readonly queue: Buffer[] = []
  private queued = 0
  private seq = 0
  private sending?: Promise<void>
  private error?: Error

  constructor(private readonly options: StdoutStreamerOptions) {}

  /** Takes a chunk of stdout; never throws (it runs in the runner's stream handler). */
  push(chunk: Buffer): void {
    const room = this.options.maxBytes - this.taken
    if (this.error || room <= 0 || chunk.length === 0) return
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk
    this.queue.push(part)
    this.queued += part.length
    this.taken += part.length
    this.pump()
  }

  /** Resolves once everything pushed has been acked; rejects with the send's error if one failed. */
  async finish(): Promise<void> {
    while (this.sending) await this.sending
    if (this.error) throw this.error
  }

  private pump(): void {
    if (this.sending || this.error || this.queued === 0) return
    const data = this.take(this.options.chunkSize)
    this.sending = this.options.send(data, this.seq++).then(
      () => {
        this.sending = undefined
        this.pump()
      },
      (error: Error) => {
        this.sending = undefined
        this.error = error
        this.queue.length = 0
        this.queued = 0
        this.options.onError?.(error)
      },
    )
  }

  /** The oldest queued bytes, at most `max` of them, as one buffer. */
  private take(max: number): Buffer {
    const parts: Buffer[] = []
    let size = 0
    while (this.queue.length > 0 && size < max) {
      const head = this.queue[0]
      const want = max - size
      if (head.length <= want) {
        parts.push(head)
        size += head.length
        this.queue.shift()
      } else {
        parts.push(head.subarray(0, want))
        this.queue[0] = head.subarray(want)
        size += want
      }
    }
    this.queued -= size
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, size)
  }
}
