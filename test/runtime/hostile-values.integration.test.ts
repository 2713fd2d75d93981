/**
 * Hostile names and image references never reach docker: the listener refuses them at create
 * (400), and a worker refuses a call forged directly on NATS (bypassing the listener) with hostile
 * headers, starting no container. Docker's own event log is the witness.
 */
import {headers} from '@nats-io/transport-node'
import {expect} from 'chai'
import {execa} from 'execa'
import {randomUUID} from 'node:crypto'
import {request} from 'undici'

import {connectNats, type NatsConnection} from '../../src/runtime/shared/nats.js'
import {callSubject, HEADER} from '../../src/runtime/shared/protocol.js'
import {containerName} from '../../src/runtime/worker/container-runner.js'
import {HOSTILE, HOSTILE_NETWORKS} from '../helpers/hostile.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {DOCKER} from '../helpers/services.js'
import {startTestStack, type TestStack} from '../helpers/stack.js'
import {waitUntil} from '../helpers/wait.js'

/** Names of the containers docker created for a worker between two times (seconds since epoch). */
async function containersCreated(workerId: string, since: number, until: number): Promise<string[]> {
  const {stdout} = await execa(DOCKER, [
    'events', '--since', String(since), '--until', String(until),
    '--filter', 'type=container', '--filter', 'event=create', '--filter', `label=amp.worker=${workerId}`,
    '--format', '{{.Actor.Attributes.name}}',
  ])
  return stdout.split('\n').filter(Boolean)
}

describe('hostile values against a real listener and worker', function () {
  this.timeout(120_000)
  let stack: TestStack
  let nc: NatsConnection

  before(async () => {
    stack = await startTestStack()
    nc = await connectNats(stack.nats.url, 'forger')
  })
  after(async () => {
    await nc?.close()
    await stack?.stop()
  })

  it('create refuses hostile names, images and networks with 400', async () => {
    const put = async (name: string, body: Record<string, unknown>) => {
      const res = await request(`${stack.listener.url}/_amp/v1/functions/${encodeURIComponent(name)}`, {method: 'PUT', body: JSON.stringify(body)})
      await res.body.dump()
      return res.statusCode
    }
    for (const value of HOSTILE) {
      expect(await put(value, {image: TEST_IMAGES.cat}), `name ${JSON.stringify(value)}`).to.equal(400)
      expect(await put('ok', {image: value}), `image ${JSON.stringify(value)}`).to.equal(400)
    }
    for (const value of HOSTILE_NETWORKS) expect(await put('ok', {image: TEST_IMAGES.cat, network: value}), `network ${JSON.stringify(value)}`).to.equal(400)
    const list = await request(`${stack.listener.url}/_amp/v1/functions`)
    expect((await list.body.json()) as unknown).to.deep.equal({functions: []})
  })

  it('a worker refuses forged calls with hostile headers and starts no container for them', async () => {
    const since = Math.floor(Date.now() / 1000) - 1
    const forge = async (field: keyof typeof HEADER, value: string) => {
      const callId = randomUUID()
      const valid: Record<string, string> = {
        callId, function: 'ok', image: TEST_IMAGES.cat, network: 'none', timeoutMs: '5000', inputSize: '0', replyTo: `amp.v1.reply.forger.${callId}`,
        // No pre-started containers: the control call must start exactly one container, its own.
        prestart: '0',
      }
      const h = headers()
      try {
        for (const [key, text] of Object.entries({...valid, [field]: value})) h.set(HEADER[key as keyof typeof HEADER], text)
      } catch {
        return 'unsendable' // the NATS client itself refuses the header (CR, LF...): it cannot reach a worker
      }
      const answer = await nc.request(callSubject('ok'), new Uint8Array(0), {headers: h, timeout: 5000})
      return answer.headers?.get(HEADER.status)
    }
    // NATS trims header values in transit (" busybox" arrives as "busybox"), so those are left out.
    const untrimmed = (values: string[]) => values.filter((value) => value.trim() === value)
    const fields: Array<[keyof typeof HEADER, string[]]> = [
      ['callId', untrimmed(HOSTILE)],
      ['function', untrimmed(HOSTILE)],
      ['image', untrimmed(HOSTILE)],
      ['network', untrimmed(HOSTILE_NETWORKS)],
      ['timeoutMs', ['-1', '0', '1e12', 'NaN', '5000; rm -rf /', '']],
      ['inputSize', ['-1', '1e15', 'x', '']],
      ['replyTo', ['a b', 'amp.>', 'amp.*', '', 'a\u0000b']],
    ]
    let sent = 0
    for (const [field, values] of fields) {
      for (const value of values) {
        const status = await forge(field, value)
        if (status === 'unsendable') continue
        sent++
        expect(status, `${field} ${JSON.stringify(value)}`).to.equal('rejected')
      }
    }
    expect(sent).to.be.greaterThan(80)
    // A control: the same forged call with valid values is accepted and does create a container,
    // so the docker events below would show any container a hostile call had started.
    const controlId = randomUUID()
    const control = await forge('callId', controlId)
    expect(control).to.equal('accepted')
    // Sent once every hostile call was answered: a container one of those started would be created by the time the control's is.
    let created: string[] = []
    await waitUntil(() => `the control call's container in the docker events (created: ${created.join(', ')})`, async () => {
      created = await containersCreated(stack.worker.id, since, Math.ceil(Date.now() / 1000) + 1)
      return created.includes(containerName(controlId))
    }, 20_000, 250)
    expect(created, 'only the control call started a container').to.have.length(1)
  })

  it('create and update refuse an image docker would refuse, and unknown keys, so the function keeps calling (#15)', async () => {
    const send = async (method: 'PATCH' | 'PUT', path: string, body: Record<string, unknown>) => {
      const res = await request(`${stack.listener.url}/_amp/v1/functions/${path}`, {method, body: JSON.stringify(body)})
      return {status: res.statusCode, body: (await res.body.json()) as {error?: {message: string}}}
    }
    expect((await send('PUT', 'kept', {image: TEST_IMAGES.cat, prestart: 0})).status).to.equal(201)
    for (const [method, path] of [['PATCH', 'kept'], ['PUT', 'kept?replace=true']] as const) {
      const upper = await send(method, path, {image: 'UPPER/x'})
      expect(upper.status, method).to.equal(400)
      expect(upper.body.error?.message).to.equal('invalid image reference "UPPER/x": the repository name must be lowercase')
      const unknown = await send(method, path, {image: TEST_IMAGES.cat, privileged: true})
      expect(unknown.status, method).to.equal(400)
      expect(unknown.body.error?.message).to.match(/^unknown setting "privileged": use image, /)
    }
    const call = await request(`${stack.listener.url}/kept`, {method: 'POST', body: 'still here'})
    expect(call.statusCode).to.equal(200)
    expect(await call.body.text()).to.equal('still here')
  })
})
