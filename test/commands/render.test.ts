import {expect} from 'chai'
import {PassThrough, Writable} from 'node:stream'

import {writeBytes} from '../../src/render.js'

/** A stream that takes one chunk then holds it until release(): write() answers false, like a full pipe. */
function slowStream() {
  let release = () => {}
  const taken: Buffer[] = []
  const stream = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, done) {
      taken.push(chunk)
      release = done
    },
  })
  return {stream: stream as unknown as NodeJS.WriteStream, taken, release: () => release()}
}

describe('writeBytes: a function output written raw, with backpressure', () => {
  it('writes the bytes as they are and returns at once while the stream takes more', async () => {
    const stream = new PassThrough()
    const bytes = Buffer.from([0x00, 0xff, 0x0a, 0x25, 0x73])
    await writeBytes(stream as unknown as NodeJS.WriteStream, bytes)
    expect(stream.read()).to.deep.equal(bytes)
  })

  it('waits for the stream to drain when it is full', async () => {
    const slow = slowStream()
    let written = false
    const writing = writeBytes(slow.stream, Buffer.from('chunk')).then(() => {
      written = true
    })
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(written).to.equal(false)
    expect(Buffer.concat(slow.taken).toString()).to.equal('chunk')
    slow.release()
    await writing
    expect(written).to.equal(true)
  })
})
