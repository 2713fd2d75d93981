import {expect} from 'chai'

import {createLogger, formatJsonLine, formatLine, type LoggerOptions} from '../../../src/runtime/shared/logger.js'

const TIME = new Date('2024-05-06T07:08:09.010Z')

/** A logger whose lines land in an array, at a fixed time. */
function capture(options: LoggerOptions = {}) {
  const lines: string[] = []
  const logger = createLogger({now: () => TIME, write: (line) => lines.push(line), ...options})
  return {lines, logger}
}

describe('logger', () => {
  describe('formatLine (logfmt)', () => {
    it('writes time, level, msg, then the fields in order, one line', () => {
      expect(formatLine('info', 'ready', {url: 'http://127.0.0.1:4242', n: 4, ok: true}, TIME)).to.equal(
        'time=2024-05-06T07:08:09.010Z level=info msg=ready url=http://127.0.0.1:4242 n=4 ok=true\n',
      )
    })

    it('quotes values with spaces, quotes, equals signs or nothing at all', () => {
      const line = formatLine('warn', 'call done', {a: 'x y', b: 'say "hi"', c: 'k=v', d: ''}, TIME)
      expect(line).to.equal(
        'time=2024-05-06T07:08:09.010Z level=warn msg="call done" a="x y" b="say \\"hi\\"" c="k=v" d=""\n',
      )
    })

    it('keeps a value with a newline on the same line (no forged log lines)', () => {
      const line = formatLine('error', 'failed', {error: 'boom\nlevel=info msg=forged'}, TIME)
      expect(line.split('\n')).to.have.length(2) // the line, then '' after the final newline
      expect(line).to.contain('error="boom\\nlevel=info msg=forged"')
    })

    it('leaves out undefined fields', () => {
      expect(formatLine('info', 'm', {a: undefined, b: 1}, TIME)).to.equal(
        'time=2024-05-06T07:08:09.010Z level=info msg=m b=1\n',
      )
    })
  })

  describe('formatJsonLine (--log-format json)', () => {
    it('writes one JSON object per line: time, level, msg, then the fields, numbers as numbers', () => {
      const line = formatJsonLine('info', 'call done', {call: 'c1', fn: 'demo', exit: 0, ms: 291, worker: 'w1', ok: true}, TIME)
      expect(line.endsWith('\n')).to.equal(true)
      expect(line.slice(0, -1)).not.to.contain('\n')
      expect(JSON.parse(line)).to.deep.equal({
        time: '2024-05-06T07:08:09.010Z',
        level: 'info',
        msg: 'call done',
        call: 'c1',
        fn: 'demo',
        exit: 0,
        ms: 291,
        worker: 'w1',
        ok: true,
      })
      expect(Object.keys(JSON.parse(line)).slice(0, 3)).to.deep.equal(['time', 'level', 'msg'])
    })

    it('keeps newlines inside values escaped, leaves out undefined fields, and lets no field replace time, level or msg', () => {
      const line = formatJsonLine('error', 'failed', {error: 'boom\n{"level":"info"}', gone: undefined, level: 'debug', msg: 'forged'}, TIME)
      expect(line.split('\n')).to.have.length(2)
      expect(JSON.parse(line)).to.deep.equal({time: '2024-05-06T07:08:09.010Z', level: 'error', msg: 'failed', error: 'boom\n{"level":"info"}'})
    })
  })

  describe('createLogger', () => {
    it('writes JSON lines with format json, with child fields and the level filter as for logfmt', () => {
      const {lines, logger} = capture({format: 'json', level: 'info', fields: {worker: 'w1'}})
      const child = logger.child({call: 'c1', fn: 'demo'})
      child.debug('hidden')
      child.info('call done', {exit: 3, ms: 12})
      expect(lines).to.have.length(1)
      expect(JSON.parse(lines[0])).to.deep.equal({
        time: '2024-05-06T07:08:09.010Z',
        level: 'info',
        msg: 'call done',
        worker: 'w1',
        call: 'c1',
        fn: 'demo',
        exit: 3,
        ms: 12,
      })
    })

    it('drops lines below its level (info by default)', () => {
      const {lines, logger} = capture()
      logger.debug('hidden')
      logger.info('shown')
      logger.warn('shown too')
      logger.error('and this')
      expect(lines.map((line) => line.match(/level=(\w+)/)?.[1])).to.deep.equal(['info', 'warn', 'error'])
    })

    it('writes debug lines at level debug, and only errors at level error', () => {
      const debug = capture({level: 'debug'})
      debug.logger.debug('d')
      expect(debug.lines).to.have.length(1)
      expect(debug.lines[0]).to.contain('level=debug msg=d')

      const error = capture({level: 'error'})
      error.logger.info('i')
      error.logger.warn('w')
      error.logger.error('e')
      expect(error.lines).to.have.length(1)
      expect(error.lines[0]).to.contain('level=error msg=e')
    })

    it('adds base fields, and per-line fields override them', () => {
      const {lines, logger} = capture({fields: {listener: 'l1', fn: 'base'}})
      logger.info('m', {fn: 'mine', call: 'c1'})
      expect(lines[0]).to.equal('time=2024-05-06T07:08:09.010Z level=info msg=m listener=l1 fn=mine call=c1\n')
    })

    it('child loggers add their fields to every line and keep the parent level and sink', () => {
      const {lines, logger} = capture({level: 'warn', fields: {worker: 'w1'}})
      const child = logger.child({call: 'abc'})
      const grandchild = child.child({fn: 'f'})
      child.info('dropped: below warn')
      grandchild.warn('slow', {ms: 12})
      logger.warn('parent')
      expect(lines).to.deep.equal([
        'time=2024-05-06T07:08:09.010Z level=warn msg=slow worker=w1 call=abc fn=f ms=12\n',
        'time=2024-05-06T07:08:09.010Z level=warn msg=parent worker=w1\n',
      ])
    })

    it('writes to stderr by default, never to stdout', () => {
      const written: string[] = []
      const stdout: string[] = []
      const originalErr = process.stderr.write
      const originalOut = process.stdout.write
      process.stderr.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stderr.write
      process.stdout.write = ((chunk: string) => stdout.push(chunk) > 0) as typeof process.stdout.write
      try {
        createLogger().info('to stderr', {k: 'v'})
      } finally {
        process.stderr.write = originalErr
        process.stdout.write = originalOut
      }
      expect(stdout).to.deep.equal([])
      expect(written).to.have.length(1)
      expect(written[0]).to.match(/^time=\S+ level=info msg="to stderr" k=v\n$/)
    })
  })
})
