/**
 * npm run test:cluster: amp on eight test hosts (cluster.ts), one fault at a time under mixed sync
 * and async load, and one table of what callers saw. Needs root (network namespaces, dockerds) and
 * a build (it runs bin/run.js).
 */
import {jetstreamManager} from '@nats-io/jetstream'
import {connect} from '@nats-io/transport-node'
import {expect} from 'chai'
import {existsSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {AmpClient} from '../../src/runtime/client/client.js'
import {ensureTestImages, TEST_IMAGES} from '../helpers/images.js'
import {waitFor} from '../helpers/wait.js'
import {Cluster, type Daemon} from './cluster.js'
import {MixedLoad} from './load.js'
import {cutLink, restoreLink} from './netns.js'

const FN = 'echo'
/** Load before the fault, and under it until the lost part is back. */
const BEFORE_MS = 4000
const DURING_MS = 12_000
const AFTER_MS = 4000

interface Row {
  fault: string
  sync: number
  ok: number
  failed: string
  asyncAccepted: number
  asyncRefused: number
  lost: number
  twice: number
  left: number
  recoveryS: string
}

const rows: Row[] = []

function printTable(): void {
  const header: Row = {fault: 'fault', sync: 0, ok: 0, failed: '502/503/reset', asyncAccepted: 0, asyncRefused: 0, lost: 0, twice: 0, left: 0, recoveryS: 'serving again'}
  const cells = (row: Row, head = false) =>
    head
      ? ['fault', 'sync calls', '200 ok', 'failed (lost node)', 'async 202', 'async refused', 'async lost', 'ran twice', 'containers left', 'serving again']
      : [row.fault, row.sync, row.ok, row.failed, row.asyncAccepted, row.asyncRefused, row.lost, row.twice, row.left, row.recoveryS].map(String)
  const table = [cells(header, true), ...rows.map((row) => cells(row))]
  const widths = table[0].map((_cell, column) => Math.max(...table.map((line) => line[column].length)))
  console.log(`\n${table.map((line) => line.map((cell, column) => cell.padEnd(widths[column])).join(' | ')).join('\n')}\n`)
}

describe('amp on several hosts: a NATS cluster, an etcd cluster, 3 Docker hosts (npm run test:cluster)', function () {
  this.timeout(20 * 60_000)
  let cluster: Cluster

  before(async function () {
    if (process.getuid?.() !== 0) throw new Error('npm run test:cluster needs root: network namespaces and extra dockerds')
    if (!existsSync(fileURLToPath(new URL('../../dist/commands', import.meta.url)))) throw new Error('run npm run build first: the cluster runs bin/run.js')
    await ensureTestImages()
    cluster = await Cluster.start([TEST_IMAGES.cat])
    const client = new AmpClient({server: cluster.listenerUrls[0]})
    await client.createFunction(FN, {image: TEST_IMAGES.cat})
    // Both listeners know it (the other one through its etcd watch).
    await waitFor('the function on both listeners', async () => {
      for (const url of cluster.listenerUrls) if ((await fetch(`${url}/${FN}`, {method: 'POST', body: 'x'})).status !== 200) return undefined
      return true
    }, 60_000)
  })

  after(async function () {
    printTable()
    await cluster?.close()
  })

  it('keeps every stream, KV bucket and object store on 3 NATS servers (3 replicas)', async () => {
    // An async call makes sure the listener has opened the store (it does on first use).
    const accepted = await fetch(`${cluster.listenerUrls[0]}/${FN}`, {method: 'POST', body: 'r3', headers: {prefer: 'respond-async'}})
    expect(accepted.status).to.equal(202)
    const nc = await connect({servers: cluster.natsUrls.split(',')})
    try {
      const jsm = await jetstreamManager(nc)
      for (const stream of ['AMP_CALLS', 'AMP_DEAD', 'AMP_CALLBACKS', 'AMP_LOGS', 'KV_amp_calls', 'OBJ_amp_call_io']) {
        const info = await jsm.streams.info(stream)
        expect(info.config.num_replicas, stream).to.equal(3)
        expect(info.cluster?.replicas ?? [], `${stream}'s followers`).to.have.length(2)
      }
    } finally {
      await nc.close()
    }
  })

  /**
   * Runs the load, injects the fault, keeps the load on while it lasts, undoes it (`restore`), and
   * checks every caller's answer. `workerLost`: the fault takes a worker away, so an async call may run twice.
   */
  async function underLoad(fault: string, inject: () => Promise<void>, restore: () => Promise<void>, options: {workerLost?: boolean; reset?: boolean} = {}): Promise<void> {
    const load = new MixedLoad(cluster.listenerUrls, FN, {syncCallers: 4, asyncEveryMs: 250})
    load.start()
    await sleep(BEFORE_MS)
    const faultAt = Date.now()
    await inject()
    await sleep(DURING_MS)
    await restore()
    await cluster.heal()
    await sleep(AFTER_MS)
    await load.stop()
    const asyncCheck = await load.checkAsync()
    const left = await waitFor('no container of a dead worker', async () => ((await cluster.leftovers()).length === 0 ? [] : undefined), 90_000).catch(async () => cluster.leftovers())
    await load.close()

    const failed = load.sync.filter((call) => !call.ok)
    const documented = failed.filter((call) => call.status === 502 || call.status === 503 || (options.reset && call.status === 'reset'))
    const lastFailure = Math.max(0, ...failed.map((call) => call.endedAt - faultAt))
    const statuses = [...new Set(failed.map((call) => String(call.status)))].join('/')
    rows.push({
      fault,
      sync: load.sync.length,
      ok: load.sync.length - failed.length,
      failed: failed.length === 0 ? '0' : `${failed.length} (${statuses})`,
      asyncAccepted: load.async.filter((call) => call.status === 202).length,
      asyncRefused: load.async.filter((call) => call.status !== 202).length,
      lost: asyncCheck.lost.length,
      twice: asyncCheck.twice.length,
      left: left.length,
      recoveryS: failed.length === 0 ? 'no error seen' : `${(lastFailure / 1000).toFixed(1)} s after the fault`,
    })

    const reasons = new Map<string, number>()
    for (const call of load.async.filter((call) => call.status !== 202)) reasons.set(`${call.status} ${call.detail ?? ''}`, (reasons.get(`${call.status} ${call.detail ?? ''}`) ?? 0) + 1)
    for (const [reason, count] of reasons) console.log(`      [refused] ${count} × ${reason}`)
    expect(load.sync.length, 'sync calls made').to.be.greaterThan(10)
    expect(rows.at(-1)!.asyncAccepted, 'async calls accepted').to.be.greaterThan(10)
    expect(failed.filter((call) => !documented.includes(call)).map((call) => `${call.status} ${call.detail ?? ''}`), 'answers other than 200 and the documented 502/503').to.deep.equal([])
    expect(failed.filter((call) => call.endedAt < faultAt).length, 'failures before the fault').to.equal(0)
    const refused = load.async.filter((call) => call.status !== 202 && call.status !== 503 && !(options.reset && call.status === 'reset'))
    expect(refused.map((call) => call.status), 'async answers other than 202 and the documented 503').to.deep.equal([])
    if (asyncCheck.lost.length > 0) await explainLost(asyncCheck.lost.map((call) => call.callId))
    expect(asyncCheck.lost, 'async calls accepted (202) but lost').to.deep.equal([])
    if (!options.workerLost) expect(asyncCheck.twice, 'async calls that ran twice with no worker lost').to.deep.equal([])
    expect(left, 'containers of dead workers').to.deep.equal([])
  }

  /** Prints what the stream leaders hold for calls the check found lost, and how far each replica lags. */
  async function explainLost(callIds: string[]): Promise<void> {
    const nc = await connect({servers: cluster.natsUrls.split(',')})
    try {
      const jsm = await jetstreamManager(nc)
      for (const callId of callIds) {
        const record = await jsm.streams.getMessage('KV_amp_calls', {last_by_subj: `$KV.amp_calls.${callId}`}).then((m) => m?.string(), (error: Error) => `unreadable: ${error.message}`)
        console.log(`  [lost] ${callId} at the KV leader: ${record}`)
      }
      for (const stream of ['AMP_CALLS', 'KV_amp_calls', 'OBJ_amp_call_io']) {
        const info = await jsm.streams.info(stream)
        console.log(`  [lost] ${stream}: leader ${info.cluster?.leader}, last seq ${info.state.last_seq}, replicas ${JSON.stringify(info.cluster?.replicas)}`)
      }
      const consumer = await jsm.consumers.info('AMP_CALLS', 'amp-workers').catch((error: Error) => error.message)
      console.log(`  [lost] consumer: ${typeof consumer === 'string' ? consumer : JSON.stringify({pending: consumer.num_pending, ackPending: consumer.num_ack_pending, redelivered: consumer.num_redelivered, cluster: consumer.cluster})}`)
    } finally {
      await nc.close()
    }
  }

  const restart = (daemon: () => Daemon) => async () => daemon().start()
  let victim: Daemon

  it('survives kill -9 of a NATS node that does not lead JetStream', async () => {
    await underLoad(
      'kill -9 NATS node',
      async () => {
        const leader = await cluster.metaLeader()
        victim = cluster.nats.find((node) => node !== leader)!
        victim.kill9()
      },
      restart(() => victim),
    )
  })

  it('survives kill -9 of the JetStream meta leader', async () => {
    await underLoad(
      'kill -9 JetStream meta leader',
      async () => {
        victim = await cluster.metaLeader()
        victim.kill9()
      },
      restart(() => victim),
    )
  })

  it('survives kill -9 of the etcd leader', async () => {
    await underLoad(
      'kill -9 etcd leader',
      async () => {
        victim = await cluster.etcdLeader()
        victim.kill9()
      },
      restart(() => victim),
    )
  })

  it('survives kill -9 of one listener', async () => {
    await underLoad(
      'kill -9 listener',
      async () => {
        victim = cluster.listeners[0]
        victim.kill9()
      },
      restart(() => victim),
      {reset: true},
    )
  })

  it('survives losing a whole worker host (worker, dockerd, containers) and removes what it left once it is back', async () => {
    let leftAfterReboot: string[] = []
    await underLoad(
      'kill -9 worker host',
      async () => {
        await waitFor('a call running on w1', async () => ((await cluster.containersOn(0)).length > 0 ? true : undefined), 10_000).catch(() => {})
        await cluster.killHost(0)
      },
      async () => {
        // The host boots: dockerd first, with what the dead worker left; then the worker, whose start sweeps it.
        await cluster.dockerd[0].start()
        leftAfterReboot = (await cluster.containersOn(0)).map((container) => container.name)
        await cluster.workers[0].start()
      },
      {workerLost: true},
    )
    rows.at(-1)!.fault += ` (${leftAfterReboot.length} left at reboot)`
    expect(await cluster.containersOn(0), 'containers on w1 once its worker runs again').to.satisfy((listed: Array<{pid: number}>) =>
      listed.every((container) => container.pid === cluster.workers[0].pid),
    )
  })

  it("survives a worker host's link cut for 10 s", async () => {
    await underLoad(
      'cut worker host link 10 s',
      async () => {
        await cutLink(cluster.hosts.w2)
        await sleep(10_000)
        await restoreLink(cluster.hosts.w2)
      },
      async () => {},
      {workerLost: true},
    )
  })

  it('leaves no container on any Docker host once the workers stop', async () => {
    await Promise.all(cluster.workers.map((worker) => worker.stop()))
    for (const index of cluster.workers.keys()) expect(await cluster.containersOn(index), `containers on w${index + 1}`).to.deep.equal([])
  })
})
