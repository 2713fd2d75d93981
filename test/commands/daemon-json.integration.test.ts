import {expect} from 'chai'
import {execa} from 'execa'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {request} from 'undici'

import {freePort} from '../../src/runtime/ops/servers.js'
import {ensureTestImages} from '../helpers/images.js'
import {startNotifySocket} from '../helpers/notify-socket.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'

const DEV = fileURLToPath(new URL('../../bin/dev.js', import.meta.url))

const DOC = readFileSync(new URL('../../docs/json.md', import.meta.url), 'utf8')

/** The one-line example docs/json.md gives under "## `amp <command> --json`". */
function documented(command: string): unknown {
  const section = DOC.split(/^## /m).find((part) => part.startsWith(`\`amp ${command} --json\``))
  const block = section && /```jsonl\n(.*)\n```/.exec(section)
  if (!block) throw new Error(`docs/json.md has no jsonl example for amp ${command}`)
  return JSON.parse(block[1])
}

/** Field names and value types, recursively. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])]
  if (value === null) return 'null'
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, shape(item)]))
  return typeof value
}

/** Starts `amp <args> --json`, resolves with the JSON line it prints on stdout once ready. */
async function readyLine(args: string[], env: Record<string, string> = {}) {
  const child = execa('node', [DEV, ...args, '--json'], {reject: false, env: {NODE_EXTRA_CA_CERTS: '', ...env}, stdin: 'ignore'})
  let stdout = ''
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line from amp ${args.join(' ')}:\n${stderr}`)), 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (stdout.includes('\n')) {
        clearTimeout(timer)
        resolve(stdout.slice(0, stdout.indexOf('\n')))
      }
    })
    child.on('exit', () => reject(new Error(`amp ${args.join(' ')} exited early:\n${stderr}`)))
  })
  return {child, line, stdout: () => stdout, stderr: () => stderr}
}

describe('daemons with --json: one JSON line on stdout when ready', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    ;[nats, etcd] = await Promise.all([startNats(), startEtcd()])
  })

  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()])
  })

  it('listener start --port 0: the line tells the URL it really listens on', async () => {
    const {child, line, stdout, stderr} = await readyLine([
      'listener', 'start', '--host', '127.0.0.1', '--port', '0', '--nats', nats.url, '--etcd', etcd.url,
    ])
    const ready = JSON.parse(line)
    expect(shape(ready)).to.deep.equal(shape(documented('listener start')))
    expect(ready).to.include({ready: true, nats: nats.url, maxBodyBytes: 8 * 1024 * 1024})
    expect(ready.etcd).to.deep.equal([etcd.url])
    expect(ready.listener.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    const health = await request(`${ready.listener.url}/_amp/v1/health/live`)
    expect(health.statusCode).to.equal(200)
    await health.body.dump()
    child.kill('SIGTERM')
    expect((await child).exitCode, stderr()).to.equal(0)
    expect(stdout().trim().split('\n'), 'nothing but the ready line on stdout').to.have.length(1)
  })

  it('worker start: the line names the worker and its settings', async () => {
    const {child, line, stderr} = await readyLine(['worker', 'start', '--nats', nats.url, '--docker', DOCKER, '--concurrency', '2'])
    const ready = JSON.parse(line)
    expect(shape(ready)).to.deep.equal(shape(documented('worker start')))
    expect(ready).to.include({ready: true, nats: nats.url, concurrency: 2, docker: DOCKER, pull: 'missing'})
    expect(ready.worker.id).to.match(/^[A-Za-z0-9-]+$/)
    expect(ready.worker.metricsUrl).to.equal(null)
    child.kill('SIGTERM')
    expect((await child).exitCode, stderr()).to.equal(0)
  })

  it('a SIGTERM right after the ready line drains and exits 0, even while systemd is being told (worker, listener)', async () => {
    // Telling systemd runs systemd-notify: a SIGTERM sent meanwhile used to kill the daemon outright.
    const notify = await startNotifySocket()
    try {
      for (const args of [
        ['worker', 'start', '--nats', nats.url, '--docker', DOCKER],
        ['listener', 'start', '--port', '0', '--nats', nats.url, '--etcd', etcd.url],
      ]) {
        const {child, stderr} = await readyLine(args, {NOTIFY_SOCKET: notify.path})
        child.kill('SIGTERM')
        const exit = await child
        expect([exit.exitCode, exit.signal ?? null], `${args[0]}: ${stderr()}`).to.deep.equal([0, null])
      }
    } finally {
      await notify.close()
    }
  })

  it('up: the line says where everything is and what amp started', async () => {
    const home = mkdtempSync(path.join(tmpdir(), 'amp-up-json-'))
    const natsUrl = `nats://127.0.0.1:${await freePort()}`
    try {
      const {child, line, stderr} = await readyLine(
        ['up', '--port', '0', '--nats', natsUrl, '--etcd', etcd.url, '--docker', DOCKER],
        {HOME: home, XDG_DATA_HOME: path.join(home, 'data')},
      )
      const ready = JSON.parse(line)
      // The documented example has a started nats-server (log set) and an etcd already running (log null), as here.
      expect(shape(ready)).to.deep.equal(shape(documented('up')))
      expect(ready.ready).to.equal(true)
      expect(ready.nats).to.include({url: natsUrl, started: true})
      expect(ready.nats.log).to.be.a('string')
      expect(ready.etcd).to.deep.equal({url: etcd.url, started: false, log: null})
      expect(ready.listener.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
      child.kill('SIGINT')
      expect((await child).exitCode, stderr()).to.equal(0)
    } finally {
      rmSync(home, {recursive: true, force: true})
    }
  })
})
