import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {AckPolicy, RetentionPolicy, StorageType} from '@nats-io/jetstream'
import {expect} from 'chai'

import {
  AsyncStore,
  CALL_STREAM,
  CALLBACK_CONSUMER,
  CALLBACK_STREAM,
  DEAD_STREAM,
  DEFAULT_ASYNC_SETTINGS,
  IO_BUCKET,
  RECORD_BUCKET,
  WORKER_CONSUMER,
} from '../../../src/runtime/shared/async-store.js'
import {connectNats, type NatsConnection} from '../../../src/runtime/shared/nats.js'
import {startNats, type ServiceHandle} from '../../helpers/services.js'

/** Records the subjects of JetStream API requests the connection's own client sends from now on. */
async function spyOnJetStreamApi(nc: NatsConnection) {
  const seen: string[] = []
  const spy = nc.subscribe('$JS.API.>', {
    callback: (_error, msg) => {
      seen.push(msg.subject)
    },
  })
  await nc.flush()
  return {seen, spy}
}

describe('AsyncStore against a real nats-server', function () {
  this.timeout(30_000)
  let nats: ServiceHandle
  let nc: NatsConnection
  let store: AsyncStore

  before(async () => {
    nats = await startNats()
    nc = await connectNats(nats.url, 'async store test')
    store = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, readTimeoutMs: 2000})
  })

  after(async () => {
    await nc?.close()
    await nats?.stop()
  })

  it('reads call records from the stream leader, never by direct get (a lagging replica may answer those)', async () => {
    const {seen, spy} = await spyOnJetStreamApi(nc)
    await store.putRecord({callId: 'leader-read', function: 'f', state: 'queued', attempts: 0, maxAttempts: 1, createdAt: new Date().toISOString(), deadLetter: false})
    expect((await store.getRecord('leader-read'))?.record.state).to.equal('queued')
    await nc.flush()
    spy.unsubscribe()
    expect(seen.filter((subject) => subject.includes(`KV_${RECORD_BUCKET}`))).to.deep.equal([`$JS.API.STREAM.MSG.GET.KV_${RECORD_BUCKET}`])
  })

  it('reads a one-chunk input from the stream leader, not through a consumer (those stalled after a failover), and a larger one whole', async () => {
    const {seen, spy} = await spyOnJetStreamApi(nc)
    const small = randomBytes(1000)
    await store.putInput('one-chunk', small)
    expect(Buffer.from((await store.getInput('one-chunk'))!).equals(small)).to.equal(true)
    await nc.flush()
    expect(seen.filter((subject) => subject.includes('CONSUMER')), 'consumers made for a one-chunk read').to.deep.equal([])
    spy.unsubscribe()
    const large = randomBytes(1024 * 1024)
    await store.putInput('many-chunks', large)
    expect(Buffer.from((await store.getInput('many-chunks'))!).equals(large)).to.equal(true)
    await store.putInput('empty', new Uint8Array())
    expect((await store.getInput('empty'))?.length).to.equal(0)
    expect(await store.getInput('never-stored')).to.equal(null)
  })

  it('ends a read of an input deleted while it is read instead of hanging (nats.js waits for purged chunks)', async () => {
    await store.putInput('racy', randomBytes(1024 * 1024))
    const read = store.getInput('racy').then(
      (data) => (data ? `read ${data.length} bytes` : 'null'),
      (error: Error) => error.message,
    )
    await store.deleteInput('racy')
    // Whichever way the race goes, the read ends: with the bytes, nothing, or the deadline's error.
    expect(await read).to.match(/^read 1048576 bytes$|^null$|took over 2000 ms/)
  })

  it('creates what docs/async.md documents: file-stored streams, work queues, consumers with an explicit ack and the lease as ack wait', async () => {
    const docs = readFileSync(new URL('../../../docs/async.md', import.meta.url), 'utf8')
    const expected: Array<[string, string, string]> = [
      [CALL_STREAM, RetentionPolicy.Workqueue, 'amp.v1.async.call.*'],
      [DEAD_STREAM, RetentionPolicy.Limits, 'amp.v1.async.dead.*'],
      [CALLBACK_STREAM, RetentionPolicy.Workqueue, 'amp.v1.async.callback.*'],
      [`KV_${RECORD_BUCKET}`, RetentionPolicy.Limits, `$KV.${RECORD_BUCKET}.>`],
      [`OBJ_${IO_BUCKET}`, RetentionPolicy.Limits, `$O.${IO_BUCKET}.C.>`],
    ]
    for (const [name, retention, subject] of expected) {
      const {config} = await store.jsm.streams.info(name)
      expect(config.storage, name).to.equal(StorageType.File)
      expect(config.retention, name).to.equal(retention)
      expect(config.subjects, name).to.include(subject)
      expect(docs, `docs/async.md names ${name}`).to.contain(`\`${name}\``)
    }
    expect(docs).to.contain('`amp.v1.async.call.<function>`').and.contain('`amp.v1.async.dead.<function>`').and.contain('`amp.v1.async.callback.<function>`')
    // Records and outputs live for the retention time (24 h by default, as documented).
    expect((await store.jsm.streams.info(`KV_${RECORD_BUCKET}`)).config.max_age).to.equal(DEFAULT_ASYNC_SETTINGS.retentionMs * 1_000_000)
    expect(docs).to.contain('24 h')
    for (const [stream, consumer, ackWaitMs] of [[CALL_STREAM, WORKER_CONSUMER, DEFAULT_ASYNC_SETTINGS.leaseMs], [CALLBACK_STREAM, CALLBACK_CONSUMER, 30_000]] as const) {
      const {config} = await store.jsm.consumers.info(stream, consumer)
      expect(config.durable_name).to.equal(consumer)
      expect(config.ack_policy).to.equal(AckPolicy.Explicit)
      expect(config.ack_wait).to.equal(ackWaitMs * 1_000_000)
      expect(docs, `docs/async.md names ${consumer}`).to.contain(`\`${consumer}\``)
    }
  })

  it('keeps what exists: opening again with other settings changes no stream or consumer', async () => {
    await AsyncStore.open(nc, {retentionMs: 60_000, leaseMs: 5000})
    expect((await store.jsm.consumers.info(CALL_STREAM, WORKER_CONSUMER)).config.ack_wait).to.equal(DEFAULT_ASYNC_SETTINGS.leaseMs * 1_000_000)
    expect((await store.jsm.streams.info(`KV_${RECORD_BUCKET}`)).config.max_age).to.equal(DEFAULT_ASYNC_SETTINGS.retentionMs * 1_000_000)
  })
})
