import {expect} from 'chai'
import type {MsgHdrs, NatsConnection} from '@nats-io/transport-node'

import {
  CallLogPublisher,
  LineSplitter,
  LOG_LIMITS,
  LOG_TRUNCATED_HEADER,
  logFilter,
  logStreamConfig,
  logSubject,
  MAX_LINE_BYTES,
} from '../../../src/runtime/shared/call-logs.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'

/** Splits `chunks` and returns the lines as strings. */
function split(chunks: Array<string | Buffer>, max = 1000): string[] {
  const lines: string[] = []
  const splitter = new LineSplitter(max, (line) => lines.push(line.toString('utf8')))
  for (const chunk of chunks) splitter.write(Buffer.from(chunk))
  splitter.end()
  return lines
}

interface Published {
  subject: string
  data: string
  headers: MsgHdrs
}

/** Just enough of a NATS connection to see what the publisher sends. */
function fakeNats(options: {failPublish?: boolean} = {}) {
  const published: Published[] = []
  const nc = {
    publish(subject: string, data: Uint8Array, opts: {headers: MsgHdrs}) {
      if (options.failPublish) throw new Error('connection closed')
      published.push({subject, data: Buffer.from(data).toString('utf8'), headers: opts.headers})
    },
  } as unknown as NatsConnection
  return {nc, published}
}

describe('call logs', () => {
  describe('subjects and stream', () => {
    it('puts one call on amp.v1.logs.<function>.<callId> and a whole function under a wildcard', () => {
      expect(logSubject('demo', 'c-1')).to.equal('amp.v1.logs.demo.c-1')
      expect(logFilter('demo', 'c-1')).to.equal('amp.v1.logs.demo.c-1')
      expect(logFilter('demo')).to.equal('amp.v1.logs.demo.*')
    })

    it('creates AMP_LOGS on file storage with the documented limits, dropping the oldest lines first', () => {
      const config = logStreamConfig()
      expect(config).to.include({name: 'AMP_LOGS', storage: 'file', retention: 'limits', discard: 'old'})
      expect(config.subjects).to.deep.equal(['amp.v1.logs.>'])
      expect(config.max_age).to.equal(24 * 3600 * 1e9)
      expect(config.max_bytes).to.equal(1024 ** 3)
      expect(config.max_msg_size).to.equal(64 * 1024)
      expect(MAX_LINE_BYTES).to.be.lessThan(LOG_LIMITS.maxMessageBytes)
    })
  })

  describe('LineSplitter', () => {
    it('cuts on newlines, whatever the chunks, and drops the newline (and a \\r before it)', () => {
      expect(split(['one\ntw', 'o\r\nthr', 'ee\n'])).to.deep.equal(['one', 'two', 'three'])
    })

    it('keeps empty lines, and a last line without a newline', () => {
      expect(split(['a\n\nb'])).to.deep.equal(['a', '', 'b'])
      expect(split([''])).to.deep.equal([])
    })

    it('sends a line longer than the limit in pieces, never cutting a UTF-8 character', () => {
      const line = 'é'.repeat(10) // 20 bytes, 2 per character
      const pieces = split([`${line}\nnext\n`], 7)
      expect(pieces.join('')).to.equal(`${line}next`)
      expect(pieces.at(-1)).to.equal('next')
      for (const piece of pieces) expect(Buffer.byteLength(piece)).to.be.at.most(7)
      expect(pieces.join('')).not.to.contain('\ufffd')
    })

    it('does not add an empty line when a split line ends exactly at the limit', () => {
      expect(split(['abcdefgh\n'], 4)).to.deep.equal(['abcd', 'efgh'])
      expect(split(['abcd\n'], 4)).to.deep.equal(['abcd'])
    })
  })

  describe('CallLogPublisher', () => {
    const call = {callId: 'c-1', function: 'demo'}

    it('publishes each line as it is written, with call id, function and worker headers', () => {
      const {nc, published} = fakeNats()
      const log = new CallLogPublisher(nc, 'w-1', silentLogger).forCall(call)
      log.write(Buffer.from('first\nsec'))
      // Live: the first line is out before the call ends.
      expect(published.map((p) => p.data)).to.deep.equal(['first'])
      log.write(Buffer.from('ond\n'))
      log.end()
      expect(published.map((p) => p.data)).to.deep.equal(['first', 'second'])
      for (const message of published) {
        expect(message.subject).to.equal('amp.v1.logs.demo.c-1')
        expect(message.headers.get('Amp-Call-Id')).to.equal('c-1')
        expect(message.headers.get('Amp-Function')).to.equal('demo')
        expect(message.headers.get('Amp-Worker')).to.equal('w-1')
      }
    })

    it('stops at the per-call limit with one marker line, so a chatty call cannot flood the stream', () => {
      const {nc, published} = fakeNats()
      const log = new CallLogPublisher(nc, 'w-1', silentLogger, {maxCallBytes: 10}).forCall(call)
      log.write(Buffer.from('12345\n67890\nabcdef\nmore\nand more\n'))
      log.end()
      expect(published.map((p) => p.data)).to.deep.equal([
        '12345',
        '67890',
        '[amp] log cut here: the call wrote more than 10 bytes on stderr',
      ])
      expect(published[2].headers.get(LOG_TRUNCATED_HEADER)).to.equal('true')
      expect(published[0].headers.get(LOG_TRUNCATED_HEADER)).to.equal('')
    })

    it('never throws when NATS refuses a line (the call must not notice)', () => {
      const {nc} = fakeNats({failPublish: true})
      const log = new CallLogPublisher(nc, 'w-1', silentLogger).forCall(call)
      expect(() => {
        log.write(Buffer.from('a\nb\n'))
        log.end()
      }).not.to.throw()
    })
  })
})
