/**
 * Replicas against real nats-servers: a 3-node cluster on loopback (routes, JetStream on each) and a
 * single server. Streams made by an older amp with 1 replica are raised, never lowered.
 */
import {jetstreamManager} from '@nats-io/jetstream'
import {Kvm} from '@nats-io/kv'
import {connect, type NatsConnection} from '@nats-io/transport-node'
import {expect} from 'chai'

import {asyncStreamConfigs, AsyncStore, CALL_STREAM, DEFAULT_ASYNC_SETTINGS, RECORD_BUCKET} from '../../../src/runtime/shared/async-store.js'
import {ensureLogStream, LOG_STREAM} from '../../../src/runtime/shared/call-logs.js'
import {freePort} from '../../../src/runtime/ops/servers.js'
import {type ServiceHandle, startNats} from '../../helpers/services.js'
import {waitFor} from '../../helpers/wait.js'

const AMP_STREAMS = ['AMP_CALLS', 'AMP_DEAD', 'AMP_CALLBACKS', 'KV_amp_calls', 'OBJ_amp_call_io']

async function replicasOf(nc: NatsConnection, stream: string): Promise<number> {
  const info = await (await jetstreamManager(nc)).streams.info(stream)
  return info.config.num_replicas
}

describe('JetStream replicas of amp streams (real nats-servers)', function () {
  this.timeout(120_000)

  describe('on a 3-node cluster', () => {
    const nodes: ServiceHandle[] = []
    let nc: NatsConnection

    before(async () => {
      const routes = [await freePort(), await freePort(), await freePort()]
      const routeList = routes.map((port) => `nats://127.0.0.1:${port}`).join(',')
      nodes.push(
        ...(await Promise.all(
          routes.map((port, index) =>
            startNats({args: ['--server_name', `n${index + 1}`, '--cluster_name', 'amp', '--cluster', `nats://127.0.0.1:${port}`, '--routes', routeList]}),
          ),
        )),
      )
      nc = await connect({servers: nodes.map((node) => node.url)})
      // INFO lists the cluster's servers once the routes are up; JetStream answers once it has a meta leader.
      await waitFor('3 servers in INFO', async () => ((nc.info?.connect_urls?.length ?? 0) >= 3 ? true : undefined), 30_000)
      await waitFor('JetStream', () => jetstreamManager(nc, {timeout: 1000}).then((jsm) => jsm.getAccountInfo()).then(() => true, () => undefined), 30_000)
    })

    after(async () => {
      await nc?.close()
      await Promise.all(nodes.map((node) => node.stop()))
    })

    it('raises streams an older amp made with 1 replica to 3, creates the rest with 3, and never lowers them', async () => {
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({...asyncStreamConfigs(DEFAULT_ASYNC_SETTINGS)[0], num_replicas: 1})
      await new Kvm(nc).create(RECORD_BUCKET, {history: 1, replicas: 1})
      expect(await replicasOf(nc, CALL_STREAM)).to.equal(1)

      const store = await AsyncStore.open(nc, DEFAULT_ASYNC_SETTINGS)
      const actions = Object.fromEntries(store.streams.map((setup) => [setup.stream, `${setup.action} ${setup.replicas}`]))
      expect(actions).to.deep.equal({
        AMP_CALLS: 'raised 3',
        AMP_DEAD: 'created 3',
        AMP_CALLBACKS: 'created 3',
        KV_amp_calls: 'raised 3',
        OBJ_amp_call_io: 'created 3',
      })
      for (const stream of AMP_STREAMS) expect(await replicasOf(nc, stream), stream).to.equal(3)

      // Asked for 1 (say, by a daemon with --js-replicas 1), amp keeps the 3 there are.
      const again = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, replicas: 1})
      expect(again.streams.map((setup) => setup.action)).to.deep.equal(['kept', 'kept', 'kept', 'kept', 'kept'])
      for (const stream of AMP_STREAMS) expect(await replicasOf(nc, stream), stream).to.equal(3)
    })

    it('creates the log stream with 3 replicas', async () => {
      expect(await ensureLogStream(nc)).to.deep.include({stream: LOG_STREAM, replicas: 3, action: 'created'})
      expect(await replicasOf(nc, LOG_STREAM)).to.equal(3)
    })

    it('refuses, with the server\'s reason, more replicas than the cluster has servers when the number is given', async () => {
      const error = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, replicas: 5}).then(
        () => undefined,
        (caught: Error) => caught,
      )
      expect(error?.message).to.match(/asynchronous calls need JetStream: .*(peers|resources)/)
    })
  })

  describe('on one server', () => {
    let server: ServiceHandle
    let nc: NatsConnection

    before(async () => {
      server = await startNats()
      nc = await connect({servers: server.url})
    })

    after(async () => {
      await nc?.close()
      await server?.stop()
    })

    it('auto keeps 1 replica, as before', async () => {
      const store = await AsyncStore.open(nc, DEFAULT_ASYNC_SETTINGS)
      expect(store.streams.map((setup) => setup.replicas)).to.deep.equal([1, 1, 1, 1, 1])
      for (const stream of AMP_STREAMS) expect(await replicasOf(nc, stream), stream).to.equal(1)
    })
  })
})
