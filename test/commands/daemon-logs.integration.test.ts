import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {request} from 'undici'

import {ensureTestImages, TEST_IMAGES} from '../helpers/images.js'
import {DAEMON_KILL_AFTER_MS, DEV} from '../helpers/run-amp-process.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'
import {waitUntil} from '../helpers/wait.js'

const SECRET = 'TOP-SECRET-INPUT-4711'

interface Daemon {
  child: ResultPromise
  /** Everything it wrote on stderr so far, one entry per line. */
  lines: () => string[]
}

/** `amp <args>` as its own process; resolves once a stderr line matches `ready`. */
async function daemon(args: string[], env: Record<string, string>, ready: RegExp): Promise<Daemon> {
  const child = execa('node', [DEV, ...args], {reject: false, stdin: 'ignore', env: {NODE_EXTRA_CA_CERTS: '', ...env}, forceKillAfterDelay: DAEMON_KILL_AFTER_MS})
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`amp ${args.join(' ')} did not get ready:\n${stderr}`)), 30_000)
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      if (ready.test(stderr)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.on('exit', () => reject(new Error(`amp ${args.join(' ')} exited early:\n${stderr}`)))
  })
  return {child, lines: () => stderr.split('\n').filter(Boolean)}
}

/** Parses every line as JSON; fails on the first that is not one object. */
function records(lines: string[]): Array<Record<string, unknown>> {
  return lines.map((line) => {
    const record = JSON.parse(line)
    expect(record, line).to.be.an('object')
    return record
  })
}

describe('daemon logs: --log-format json and -v', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let home: string
  const daemons: Daemon[] = []

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    ;[nats, etcd] = await Promise.all([startNats(), startEtcd()])
    home = mkdtempSync(path.join(tmpdir(), 'amp-daemon-logs-'))
  })

  after(async () => {
    for (const {child} of daemons) child.kill('SIGTERM')
    await Promise.all(daemons.map(({child}) => child))
    await Promise.all([nats?.stop(), etcd?.stop()])
    rmSync(home, {recursive: true, force: true})
  })

  it('write one JSON object per line on stderr, call lines with call id, function, duration, exit code and worker, never the call body', async () => {
    const worker = await daemon(
      ['worker', 'start', '--log-format', 'json', '-v', '--nats', nats.url, '--docker', DOCKER],
      {HOME: home},
      /worker ready/,
    )
    daemons.push(worker)
    // The format from the environment, as a systemd EnvironmentFile would set it.
    const listener = await daemon(
      ['listener', 'start', '--port', '0', '--nats', nats.url, '--etcd', etcd.url],
      {HOME: home, AMP_LOG_FORMAT: 'json'},
      /listener ready/,
    )
    daemons.push(listener)
    const url = String(records(listener.lines()).find((record) => record.msg === 'listener ready')?.url)
    expect(url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)

    const created = await request(`${url}/_amp/v1/functions/echo`, {method: 'PUT', body: JSON.stringify({image: TEST_IMAGES.stderr})})
    expect(created.statusCode).to.equal(201)
    await created.body.dump()
    const call = await request(`${url}/echo`, {method: 'POST', body: SECRET})
    expect(call.statusCode).to.equal(200)
    expect(await call.body.text()).to.equal(SECRET)
    const callId = String(call.headers['amp-call-id'])
    const workerId = String(call.headers['amp-worker'])

    // The daemons log the call once it was answered (the listener after it answered).
    const logged = (lines: string[], msg: string) => records(lines).some((record) => record.msg === msg && record.call === callId)
    await waitUntil(() => `the call's log lines from both daemons:\n${[...worker.lines(), ...listener.lines()].join('\n')}`, () => logged(worker.lines(), 'call done') && logged(listener.lines(), 'call answered'), 10_000, 50)
    const workerRecords = records(worker.lines())
    const listenerRecords = records(listener.lines())
    for (const record of [...workerRecords, ...listenerRecords]) {
      expect(record.time).to.be.a('string')
      expect(record.level).to.be.oneOf(['debug', 'info', 'warn', 'error'])
      expect(record.msg).to.be.a('string')
    }

    const done = workerRecords.find((record) => record.msg === 'call done')
    expect(done).to.include({call: callId, fn: 'echo', exit: 0, worker: workerId, level: 'info'})
    expect(done?.ms).to.be.a('number')
    const answered = listenerRecords.find((record) => record.msg === 'call answered')
    expect(answered).to.include({call: callId, fn: 'echo', exit: 0, worker: workerId, status: 200})
    expect(answered?.ms).to.be.a('number')

    // -v: the worker also logs debug lines; the listener, without -v, does not.
    expect(workerRecords.some((record) => record.level === 'debug' && record.call === callId)).to.equal(true)
    expect(listenerRecords.some((record) => record.level === 'debug')).to.equal(false)

    // The input went to stdin and came back on stdout and stderr: none of it is in a daemon log.
    expect([...worker.lines(), ...listener.lines()].join('\n')).not.to.contain(SECRET)
  })
})
