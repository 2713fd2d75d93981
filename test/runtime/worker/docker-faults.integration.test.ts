/**
 * Docker faults: a daemon the worker cannot reach, an image that is not there and cannot be pulled.
 * The caller must get 502 with the reason at once, not after the function's timeout, and no container may be left.
 */
import {expect} from 'chai'
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {request} from 'undici'

import {containersOfCall} from '../../helpers/containers.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {DOCKER} from '../../helpers/services.js'
import {createFunction, startTestStack, type StackWithoutWorker, type WorkerSettings} from '../../helpers/stack.js'

const TIMEOUT_MS = 30_000
/** Well under the function's timeout: "at once", with room for a loaded machine. */
const AT_ONCE_MS = 5000

describe('docker faults: 502 with the reason, at once', function () {
  this.timeout(120_000)
  let stack: StackWithoutWorker
  let dir: string

  before(async () => {
    stack = await startTestStack({worker: false, docker: true})
    dir = mkdtempSync(path.join(tmpdir(), 'amp-docker-faults-'))
    await createFunction(stack.listener, 'echo', {image: TEST_IMAGES.cat, timeoutMs: TIMEOUT_MS})
    await createFunction(stack.listener, 'missing', {image: 'amp-test/missing:1', timeoutMs: TIMEOUT_MS})
  })

  after(async () => {
    await stack?.stop()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  /** Calls `fn` on a worker of its own with `settings`, and returns what the caller saw and how long it took. */
  async function callWith(settings: WorkerSettings, fn: string) {
    const worker = await stack.addWorker({concurrency: 1, ...settings})
    try {
      const started = Date.now()
      const res = await request(`${stack.listener.url}/${fn}`, {method: 'POST', body: 'hello'})
      const body = await res.body.text()
      const ms = Date.now() - started
      const callId = String(res.headers['amp-call-id'])
      expect(await containersOfCall(callId), 'containers left').to.deep.equal([])
      return {status: res.statusCode, message: String(JSON.parse(body).error?.message), ms}
    } finally {
      await worker.close()
    }
  }

  it('docker daemon unreachable', async () => {
    // The docker CLI the worker runs, pointed at a socket where no daemon listens.
    const docker = path.join(dir, 'docker-down')
    writeFileSync(docker, `#!/bin/sh\nDOCKER_HOST=unix:///nonexistent.sock exec ${JSON.stringify(DOCKER)} "$@"\n`)
    chmodSync(docker, 0o755)
    const answer = await callWith({docker}, 'echo')
    console.log(`      [measured] docker down: ${answer.status} in ${answer.ms} ms`)
    expect(answer.status).to.equal(502)
    expect(answer.message).to.match(/^cannot run amp-test\/cat:1: Cannot connect to the Docker daemon at unix:\/\/\/nonexistent\.sock/)
    expect(answer.ms).to.be.below(AT_ONCE_MS)
  })

  for (const pull of ['missing', 'never'] as const) {
    it(`image missing, --pull ${pull}`, async () => {
      const answer = await callWith({pull}, 'missing')
      console.log(`      [measured] image missing (pull ${pull}): ${answer.status} in ${answer.ms} ms`)
      expect(answer.status).to.equal(502)
      expect(answer.message).to.match(/^cannot run amp-test\/missing:1: /)
      // The reason, as docker gives it: the pull that failed, or the image it does not have.
      expect(answer.message).to.match(pull === 'never' ? /No such image/i : /pull|registry|no such host|not found|denied/i)
      expect(answer.ms).to.be.below(AT_ONCE_MS)
    })
  }
})
