import {expect} from 'chai'

import {callFrames, exitCodeOf, frame, FrameDecoder, INPUT_FRAME, MAX_FRAME} from '../../../src/runtime/worker/runner-frames.js'

function decode(chunks: Buffer[]) {
  const frames: Array<[string, string]> = []
  const errors: string[] = []
  const decoder = new FrameDecoder((type, payload) => frames.push([type, payload.toString('latin1')]), (why) => errors.push(why))
  for (const chunk of chunks) decoder.push(chunk)
  return {frames, errors}
}

describe('runner frames', () => {
  it('writes a type byte, a big-endian length and the payload', () => {
    expect([...frame('O', Buffer.from('hi'))]).to.deep.equal([0x4f, 0, 0, 0, 2, 0x68, 0x69])
    expect([...frame('C')]).to.deep.equal([0x43, 0, 0, 0, 0])
  })

  it('decodes frames split anywhere across chunks, byte for byte, binary included', () => {
    const binary = Buffer.from([0, 255, 10, 13, 0x58, 0, 0, 0, 2])
    const stream = Buffer.concat([frame('H', Buffer.from('amp-runner/1')), frame('O', binary), frame('E', Buffer.from('log')), frame('X', Buffer.from([0x65, 3]))])
    for (let size = 1; size <= stream.length; size++) {
      const chunks: Buffer[] = []
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size))
      const {frames, errors} = decode(chunks)
      expect(errors).to.deep.equal([])
      expect(frames).to.deep.equal([['H', 'amp-runner/1'], ['O', binary.toString('latin1')], ['E', 'log'], ['X', 'e\u0003']])
    }
  })

  it('refuses a frame longer than any the runner sends, and decodes nothing after it', () => {
    const head = Buffer.alloc(5)
    head[0] = 0x4f
    head.writeUInt32BE(MAX_FRAME + 1, 1)
    const {frames, errors} = decode([frame('O', Buffer.from('a')), head, frame('O', Buffer.from('b'))])
    expect(frames).to.deep.equal([['O', 'a']])
    expect(errors).to.deep.equal([`a frame of ${MAX_FRAME + 1} bytes`])
  })

  it('reads an exit frame as docker would report it: the code, or 128 plus the signal', () => {
    expect(exitCodeOf(Buffer.from([0x65, 0]))).to.equal(0)
    expect(exitCodeOf(Buffer.from([0x65, 255]))).to.equal(255)
    expect(exitCodeOf(Buffer.from([0x73, 9]))).to.equal(137)
    expect(exitCodeOf(Buffer.from([0x71, 1]))).to.equal(undefined)
    expect(exitCodeOf(Buffer.from([0x65]))).to.equal(undefined)
  })

  it('sends a call as its start (more calls or not), its input in frames of at most 64 KiB, and the end of input', () => {
    const input = Buffer.alloc(INPUT_FRAME * 2 + 5, 7)
    const {frames} = decode([callFrames(input, true)])
    expect(frames.map(([type, payload]) => [type, payload.length])).to.deep.equal([['S', 1], ['I', INPUT_FRAME], ['I', INPUT_FRAME], ['I', 5], ['C', 0]])
    expect(frames[0][1]).to.equal('\u0001')
    expect(decode([callFrames(Buffer.alloc(0), false)]).frames).to.deep.equal([['S', '\u0000'], ['C', '']])
  })
})
