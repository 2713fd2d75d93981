import {expect} from 'chai'
import {request} from 'undici'

import {startListener, type Listener} from '../../../src/runtime/listener/listener.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {createFunction, startTestStack, type TestStack} from '../../helpers/stack.js'
import {startTcpProxy, type TcpProxy} from '../../helpers/tcp-proxy.js'
import {waitFor} from '../../helpers/wait.js'

async function send(url: string, method = 'POST', body?: string) {
  const started = Date.now()
  const res = await request(url, {method, body})
  const text = await res.body.text()
  return {status: res.statusCode, headers: res.headers, text, ms: Date.now() - started}
}

/** Waits until the listener's readiness says etcd is (or is not) up. */
function etcdUp(listener: Listener, up: boolean): Promise<true> {
  return waitFor(`etcd ${up ? 'up' : 'down'} on ${listener.url}`, async () => {
    const res = await send(`${listener.url}/_amp/v1/health/ready`, 'GET')
    return (JSON.parse(res.text) as {checks: {etcd: boolean}}).checks.etcd === up ? true : undefined
  })
}

// The deadline of one etcd operation (registry.ts) is 4 s: an answer well under it was not waited for.
const FAST_MS = 3000

describe('function cache: calls go on while etcd is out of reach', function () {
  this.timeout(120_000)
  let stack: TestStack
  let proxy: TcpProxy
  /** A second listener that reaches etcd only through the proxy, so the test can cut it off alone. */
  let cutOff: Listener

  before(async () => {
    stack = await startTestStack()
    proxy = await startTcpProxy(stack.etcd.url)
    cutOff = await startListener({host: '127.0.0.1', port: 0, logger: silentLogger, nats: stack.nats.url, etcd: [proxy.url]})
    for (const name of ['known', 'doomed', 'changing']) await createFunction(stack.listener, name, {image: TEST_IMAGES.cat})
  })

  after(async () => {
    await cutOff?.close()
    await proxy?.close()
    await stack?.stop()
  })

  it('finds a function created a moment ago through another listener', async () => {
    await createFunction(stack.listener, 'fresh', {image: TEST_IMAGES.cat})
    const res = await send(`${cutOff.url}/fresh`, 'POST', 'hi')
    expect(res.status, res.text).to.equal(200)
    expect(res.text).to.equal('hi')
  })

  it('cut off: serves known functions, answers 503 at once otherwise; back: drops removed and changed ones', async () => {
    await createFunction(stack.listener, 'before-cut', {image: TEST_IMAGES.cat})
    // Created after this listener read everything: it knows it from the watch.
    await waitFor('the watch to deliver before-cut', async () => ((await send(`${cutOff.url}/before-cut`, 'POST', 'x')).status === 200 ? true : undefined))
    await proxy.cut()
    await etcdUp(cutOff, false)

    for (const name of ['known', 'before-cut']) {
      const res = await send(`${cutOff.url}/${name}`, 'POST', `call ${name}`)
      expect(res.status, res.text).to.equal(200)
      expect(res.text).to.equal(`call ${name}`)
    }
    const api = await send(`${cutOff.url}/_amp/v1/functions`, 'GET')
    expect(api.status).to.equal(503)
    expect(JSON.parse(api.text).error.message).to.match(/function registry \(etcd\) unavailable/)
    expect(api.ms).to.be.below(FAST_MS)
    const create = await send(`${cutOff.url}/_amp/v1/functions/other`, 'PUT', JSON.stringify({image: TEST_IMAGES.cat}))
    expect(create.status).to.equal(503)
    const unknown = await send(`${cutOff.url}/nobody-knows`, 'POST', 'x')
    expect(unknown.status).to.equal(503)
    expect(unknown.headers['amp-error-code']).to.equal('registry_unavailable')
    expect(unknown.headers['retry-after']).to.equal('1')
    expect(unknown.ms).to.be.below(FAST_MS)

    // Meanwhile, through the other listener: one function removed, one changed.
    expect((await send(`${stack.listener.url}/_amp/v1/functions/doomed`, 'DELETE')).status).to.equal(200)
    const patch = await send(`${stack.listener.url}/_amp/v1/functions/changing`, 'PATCH', JSON.stringify({image: TEST_IMAGES.title}))
    expect(patch.status, patch.text).to.equal(200)
    // Still cut off: what it knew is what it serves.
    expect((await send(`${cutOff.url}/doomed`, 'POST', 'x')).status).to.equal(200)

    await proxy.restore()
    await etcdUp(cutOff, true)
    // Ready again means read again: the very first calls see the changes.
    const gone = await send(`${cutOff.url}/doomed`, 'POST', 'x')
    expect(gone.status, gone.text).to.equal(404)
    const changed = await send(`${cutOff.url}/changing`, 'POST', 'hello there')
    expect(changed.status, changed.text).to.equal(200)
    expect(changed.text).to.equal('Hello There\n')
    expect((await send(`${cutOff.url}/_amp/v1/functions`, 'GET')).status).to.equal(200)
  })

  it('etcd stopped: known functions served, API 503 with a clear message; etcd back: all recovers by itself', async () => {
    const {listener} = stack
    await createFunction(listener, 'survivor', {image: TEST_IMAGES.cat})
    stack.etcd.kill('SIGTERM')
    await etcdUp(listener, false)

    const call = await send(`${listener.url}/survivor`, 'POST', 'still here')
    expect(call.status, call.text).to.equal(200)
    expect(call.text).to.equal('still here')
    const api = await send(`${listener.url}/_amp/v1/functions/survivor`, 'GET')
    expect(api.status).to.equal(503)
    expect(api.headers['amp-error-code']).to.equal('registry_unavailable')
    expect(JSON.parse(api.text).error.message).to.match(/^function registry \(etcd\) unavailable: .*etcd/)
    expect(api.ms).to.be.below(FAST_MS)

    await stack.etcd.restart()
    await etcdUp(listener, true)
    await etcdUp(cutOff, true)
    await createFunction(listener, 'after-restart', {image: TEST_IMAGES.cat})
    for (const url of [listener.url, cutOff.url]) {
      const res = await send(`${url}/after-restart`, 'POST', 'back')
      expect(res.status, res.text).to.equal(200)
      expect(res.text).to.equal('back')
    }
    expect((await send(`${listener.url}/_amp/v1/functions`, 'GET')).status).to.equal(200)
  })
})
