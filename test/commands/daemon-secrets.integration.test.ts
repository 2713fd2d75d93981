/**
 * The daemons as real processes with secrets in their settings: the token and NATS credentials work
 * and appear nowhere in what they print; wrong credentials stop them at start with exit 110.
 */
import {expect} from 'chai'
import {execa} from 'execa'
import {request} from 'undici'

import {freePort} from '../../src/runtime/ops/servers.js'
import {DAEMON_KILL_AFTER_MS, DEV} from '../helpers/run-amp-process.js'
import {startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'
import {waitFor} from '../helpers/wait.js'

const PASSWORD = 'proc-Nats-Pass-1f1f'
const TOKEN = 'proc-Token-0e0e0e'

describe('daemons with a token and NATS credentials (processes)', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle
  const env = (extra: Record<string, string>) => ({NODE_EXTRA_CA_CERTS: '', PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...extra})

  before(async () => {
    ;[nats, etcd] = await Promise.all([startNats({args: ['--user', 'amp', '--pass', PASSWORD]}), startEtcd()])
  })
  after(() => Promise.all([nats?.stop(), etcd?.stop()]))

  it('amp listener start: needs the token from AMP_TOKEN, takes credentials in the NATS URL, and prints neither', async () => {
    const port = await freePort()
    const natsUrl = nats.url.replace('nats://', `nats://amp:${PASSWORD}@`)
    const child = execa('node', [DEV, 'listener', 'start', '--port', String(port), '--nats', natsUrl, '--etcd', etcd.url], {
      reject: false,
      extendEnv: false,
      env: env({AMP_TOKEN: TOKEN}),
      stdin: 'ignore',
      // A draining listener may need longer than execa's 5 s before SIGKILL.
      forceKillAfterDelay: DAEMON_KILL_AFTER_MS,
    })
    const base = `http://127.0.0.1:${port}`
    const get = async (path: string, token?: string) => {
      const response = await request(`${base}${path}`, {headers: token ? {authorization: `Bearer ${token}`} : {}})
      await response.body.dump()
      return response.statusCode
    }
    try {
      await waitFor('the listener to be ready', async () => ((await get('/_amp/v1/health/ready').catch(() => 0)) === 200 ? true : undefined), 30_000)
      expect(await get('/_amp/v1/functions')).to.equal(401)
      expect(await get('/_amp/v1/functions', 'nope')).to.equal(403)
      expect(await get('/_amp/v1/functions', TOKEN)).to.equal(200)
      expect(await get('/_amp/v1/metrics')).to.equal(401)
    } catch (error) {
      child.kill('SIGTERM')
      const failed = await child
      throw new Error(`${(error as Error).message}: ${failed.stderr}`)
    } finally {
      child.kill('SIGTERM')
    }
    const result = await child
    expect(result.exitCode).to.equal(0)
    const printed = `${result.stdout}\n${result.stderr}`
    expect(printed).to.contain('nats://<redacted>@127.0.0.1').and.contain('request refused')
    expect(printed).to.not.contain(PASSWORD)
    expect(printed).to.not.contain(TOKEN)
  })

  it('amp worker start with a wrong AMP_NATS_PASSWORD exits 110 with one line that does not show it', async () => {
    const result = await execa('node', [DEV, 'worker', 'start', '--nats', nats.url], {
      reject: false,
      extendEnv: false,
      env: env({AMP_NATS_USER: 'amp', AMP_NATS_PASSWORD: 'wrong-Proc-Pass'}),
      stdin: 'ignore',
    })
    expect(result.exitCode).to.equal(110)
    const lines = String(result.stderr).trim().split('\n')
    expect(lines[0]).to.match(/NATS at nats:\/\/127\.0\.0\.1:\d+ refused amp's credentials: Authorization Violation/)
    expect(String(result.stderr)).to.not.contain('wrong-Proc-Pass')
  })
})
