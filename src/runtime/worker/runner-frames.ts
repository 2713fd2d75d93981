/**
 * The frames the worker and the in-container runner exchange over a container's socket
 * (src/runner/amp-runner.c, docs/runner.md): 1 byte type, 4 bytes big-endian length, the payload.
 */

export const RUNNER_HELLO = 'amp-runner/1'

/** runner -> worker */
export const FROM_RUNNER = {hello: 'H', stdout: 'O', stderr: 'E', exit: 'X', failed: 'F'} as const
/** worker -> runner */
export const TO_RUNNER = {start: 'S', input: 'I', close: 'C'} as const

const HEAD = 5
/** The runner sends at most 64 KiB a frame; anything far larger is not the runner speaking. */
export const MAX_FRAME = 1024 * 1024
/** Input goes in frames of this size (the runner reads 64 KiB at a time). */
export const INPUT_FRAME = 64 * 1024

export function frame(type: string, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.allocUnsafe(HEAD)
  head[0] = type.charCodeAt(0)
  head.writeUInt32BE(payload.length, 1)
  return payload.length === 0 ? head : Buffer.concat([head, payload])
}

/** The frames that start a call: 'S' (more: other calls follow in this container), the input in 'I' frames, 'C'. */
export function callFrames(input: Uint8Array, more: boolean): Buffer {
  const parts = [frame(TO_RUNNER.start, Uint8Array.of(more ? 1 : 0))]
  for (let at = 0; at < input.length; at += INPUT_FRAME) parts.push(frame(TO_RUNNER.input, input.subarray(at, at + INPUT_FRAME)))
  parts.push(frame(TO_RUNNER.close))
  return Buffer.concat(parts)
}

/** The exit code docker would report for an 'X' payload: the code itself, or 128 + the signal. */
export function exitCodeOf(payload: Uint8Array): number | undefined {
  if (payload.length !== 2) return undefined
  if (payload[0] === 0x65) return payload[1] // 'e'
  if (payload[0] === 0x73) return 128 + payload[1] // 's'
  return undefined
}

/** Splits a byte stream into frames; a frame over MAX_FRAME is a protocol error (onError, then nothing more). */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0)
  private broken = false

  constructor(
    private readonly onFrame: (type: string, payload: Buffer) => void,
    private readonly onError: (why: string) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.broken) return
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    while (data.length >= HEAD) {
      const length = data.readUInt32BE(1)
      if (length > MAX_FRAME) {
        this.broken = true
        this.onError(`a frame of ${length} bytes`)
        return
      }
      if (data.length < HEAD + length) break
      const type = String.fromCharCode(data[0])
      const payload = data.subarray(HEAD, HEAD + length)
      data = data.subarray(HEAD + length)
      this.onFrame(type, payload)
      if (this.broken) return
    }
    // A copy: the rest of a large chunk must not keep the whole chunk alive.
    this.pending = data.length === 0 ? Buffer.alloc(0) : Buffer.from(data)
  }

  /** Stops decoding (the connection is being dropped). */
  stop(): void {
    this.broken = true
  }
}
