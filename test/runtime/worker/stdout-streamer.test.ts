import {expect} from 'chai'

import {StdoutStreamer} from '../../../src/runtime/worker/stdout-streamer.js'

/** A send whose acks the test gives by hand, recording every event. */
function scriptedSend() {
  const sent: Array<{seq: number; data: string}> = []
  const acks: Array<{ok: () => void; fail: (error: Error) => void}> = []
  const send = (chunk: Uint8Array, seq: number) => {
    sent.push({seq, data: Buffer.from(chunk).toString('latin1')})
    return new Promise<void>((resolve, reject) => acks.push({ok: resolve, fail: reject}))
  }
  /** Acks the oldest event still waiting and lets the streamer react. */
  const ack = async () => {
    acks.shift()!.ok()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return {sent, acks, send, ack}
}

describe('StdoutStreamer (a streamed call: stdout events as the container writes)', () => {
  it('sends the first write at once, without waiting for more', () => {
    const s = scriptedSend()
    const streamer = new StdoutStreamer({send: s.send, chunkSize: 1024, maxBytes: 1 << 20})
    streamer.push(Buffer.from('first\n'))
    expect(s.sent).to.deep.equal([{seq: 0, data: 'first\n'}])
  })

  it('keeps one event in flight, coalescing what is written meanwhile into the next one', async () => {
    const s = scriptedSend()
    const streamer = new StdoutStreamer({send: s.send, chunkSize: 1024, maxBytes: 1 << 20})
    streamer.push(Buffer.from('a'))
    streamer.push(Buffer.from('b'))
    streamer.push(Buffer.from('c'))
    expect(s.sent).to.have.length(1)
    await s.ack()
    expect(s.sent).to.deep.equal([{seq: 0, data: 'a'}, {seq: 1, data: 'bc'}])
    await s.ack()
    expect(s.sent).to.have.length(2)
    streamer.push(Buffer.from('d'))
    expect(s.sent.at(-1)).to.deep.equal({seq: 2, data: 'd'})
  })

  it('cuts coalesced output at the chunk size, in order, and finish() waits for every ack', async () => {
    const s = scriptedSend()
    const streamer = new StdoutStreamer({send: s.send, chunkSize: 4, maxBytes: 1 << 20})
    streamer.push(Buffer.from('0'))
    streamer.push(Buffer.from('123456789'))
    let finished = false
    const done = streamer.finish().then(() => (finished = true))
    while (s.acks.length > 0) {
      expect(finished).to.equal(false)
      await s.ack()
    }
    await done
    expect(s.sent.map((event) => event.data)).to.deep.equal(['0', '1234', '5678', '9'])
    expect(s.sent.map((event) => event.seq)).to.deep.equal([0, 1, 2, 3])
    expect(streamer.taken).to.equal(10)
  })

  it('sends nothing past maxBytes', async () => {
    const s = scriptedSend()
    const streamer = new StdoutStreamer({send: s.send, chunkSize: 100, maxBytes: 5})
    streamer.push(Buffer.from('abc'))
    streamer.push(Buffer.from('defgh'))
    streamer.push(Buffer.from('ij'))
    const done = streamer.finish()
    while (s.acks.length > 0) await s.ack()
    await done
    expect(s.sent.map((event) => event.data).join('')).to.equal('abcde')
    expect(streamer.taken).to.equal(5)
  })

  it('stops after a failed send: reports it once, drops the rest, finish() rejects', async () => {
    const s = scriptedSend()
    const errors: string[] = []
    const streamer = new StdoutStreamer({send: s.send, chunkSize: 100, maxBytes: 1000, onError: (error) => errors.push(error.message)})
    streamer.push(Buffer.from('a'))
    streamer.push(Buffer.from('b'))
    s.acks.shift()!.fail(new Error('no ack'))
    await new Promise((resolve) => setImmediate(resolve))
    streamer.push(Buffer.from('c'))
    expect(s.sent).to.have.length(1)
    expect(errors).to.deep.equal(['no ack'])
    let failure: Error | undefined
    await streamer.finish().catch((error: Error) => (failure = error))
    expect(failure?.message).to.equal('no ack')
    // The bytes taken still count: the listener sees that some never arrived.
    expect(streamer.taken).to.equal(2)
  })

  it('finish() with nothing pushed resolves at once', async () => {
    const s = scriptedSend()
    await new StdoutStreamer({send: s.send, chunkSize: 100, maxBytes: 1000}).finish()
    expect(s.sent).to.deep.equal([])
  })
})
