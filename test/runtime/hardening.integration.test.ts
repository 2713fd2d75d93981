/**
 * What a function's container really gets, seen from inside it (amp-test/sh runs its input as a
 * script) on the real dockerd: no capabilities, no privilege gain, the function's memory, CPU and
 * pids limits, and its environment; and that the environment's values show up nowhere else.
 */
import {connect, headers} from '@nats-io/transport-node'
import {expect} from 'chai'
import {execa} from 'execa'
import {randomUUID} from 'node:crypto'

import {createLogger} from '../../src/runtime/shared/logger.js'
import {callSubject, HEADER} from '../../src/runtime/shared/protocol.js'
import {containers} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'
import {startTestStack, type TestStack} from '../helpers/stack.js'
import {waitFor} from '../helpers/wait.js'

const MiB = 1024 * 1024
const SECRET = 'hunter2-5ecret-value'

// cgroup v1 and v2 keep the same limits in different files; the script prints whichever exists.
const INSPECT = String.raw`
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status
echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "memsw $(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.swap.max)"
echo "pids $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)"
echo "TOKEN=$TOKEN"
echo "LEVEL=$LEVEL"
`

describe('hardened containers on the real dockerd', function () {
  this.timeout(120_000)
  isolateEnvironment()
  let stack: TestStack
  const logged: string[] = []

  before(async () => {
    const logger = createLogger({level: 'debug', write: (line) => logged.push(line)})
    stack = await startTestStack({worker: {logger}, listener: {logger}})
  })
  after(() => stack?.stop())

  async function invoke(name: string, script: string) {
    return stack.client.invoke(name, Buffer.from(script))
  }

  it('runs with no capabilities, no new privileges, and the memory, swap, CPU and pids limits of the function', async () => {
    await stack.client.createFunction('inside', {
      image: TEST_IMAGES.sh,
      memoryBytes: 64 * MiB,
      cpus: 0.5,
      pidsLimit: 64,
      env: {TOKEN: SECRET, LEVEL: 'debug'},
    })
    const result = await invoke('inside', INSPECT)
    expect(result.exitCode, result.stderr.toString()).to.equal(0)
    const lines = result.stdout.toString().split('\n').map((line) => line.replace(/\s+/g, ' '))
    expect(lines).to.include.members([
      'CapEff: 0000000000000000',
      'CapPrm: 0000000000000000',
      'CapBnd: 0000000000000000',
      'NoNewPrivs: 1',
      `memory ${64 * MiB}`,
      'pids 64',
      'cpu 50000',
      `TOKEN=${SECRET}`,
      'LEVEL=debug',
    ])
    // No swap: memory+swap is the memory limit itself (v1), or no swap at all (v2).
    expect(lines.some((line) => line === `memsw ${64 * MiB}` || line === 'memsw 0')).to.equal(true)
  })

  it('gives a function created without limits the defaults: 256 MiB, 1 CPU, 256 pids', async () => {
    await stack.client.createFunction('defaults', {image: TEST_IMAGES.sh})
    const out = (await invoke('defaults', INSPECT)).stdout.toString()
    expect(out).to.contain(`memory ${256 * MiB}\n`).and.contain('pids 256\n').and.contain('cpu 100000\n')
    expect(out).to.contain('TOKEN=\n')
  })

  it('stops a fork bomb at the pids limit, and the call still answers', async () => {
    await stack.client.createFunction('forks', {image: TEST_IMAGES.sh, pidsLimit: 16})
    const result = await invoke('forks', 'echo before; for i in $(seq 1 40); do sleep 3 & done; echo all-started')
    expect(result.stderr.toString()).to.match(/can't fork/)
    // The shell gives up at the first fork refused: the loop never got to start all 40.
    expect(result.stdout.toString()).to.equal('before\n')
    expect(result.exitCode).to.not.equal(0)
  })

  it('kills a function over its memory limit (exit 137)', async () => {
    await stack.client.createFunction('hungry', {image: TEST_IMAGES.sh, memoryBytes: 16 * MiB})
    // A shell variable of 64 MB: four times the limit.
    const result = await invoke('hungry', "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived")
    expect(result.exitCode).to.equal(137)
    expect(result.stdout.toString()).to.not.contain('survived')
  })

  it('applies an update of limits and env to the next call', async () => {
    await stack.client.createFunction('changing', {image: TEST_IMAGES.sh, env: {LEVEL: 'debug', TOKEN: SECRET}})
    await stack.client.updateFunction('changing', {memoryBytes: 32 * MiB, pidsLimit: 20, env: {LEVEL: 'info', TOKEN: null}})
    const out = (await invoke('changing', INSPECT)).stdout.toString()
    expect(out).to.contain(`memory ${32 * MiB}\n`).and.contain('pids 20\n').and.contain('LEVEL=info\n').and.contain('TOKEN=\n')
  })

  it('never shows an env value: not in argv (ps) while it runs, nor in logs, the API or amp function inspect', async () => {
    await stack.client.createFunction('secretive', {image: TEST_IMAGES.sh, env: {TOKEN: SECRET}})
    const running = invoke('secretive', 'sleep 2; echo "$TOKEN" | wc -c')
    await waitFor('the container of the call', async () => (await containers('label=amp.function=secretive', {running: true}))[0])
    // The call's processes as the host sees them (the container's runner and its function), and no value
    // anywhere. Docker may call the container running a moment before its runner shows in ps (seen under load).
    const ps = await waitFor('the call\'s runner in ps', async () => {
      const {stdout} = await execa('ps', ['-eo', 'args', '--no-headers'])
      return stdout.includes('/.amp-runner serve /.amp-socket /bin/sh -s') ? stdout : undefined
    }, 10_000)
    expect(ps).to.not.contain(SECRET)
    const result = await running
    expect(result.stdout.toString().trim()).to.equal(String(SECRET.length + 1))

    const inspected = await runAmp(['fn', 'inspect', 'secretive', '--json', '-v', '--server', stack.listener.url])
    expect(inspected.exitCode).to.equal(0)
    expect(JSON.parse(inspected.stdout).envKeys).to.deep.equal(['TOKEN'])
    const listed = await runAmp(['fn', 'ls', '--json', '--server', stack.listener.url])
    for (const shown of [inspected.stdout, inspected.stderr, listed.stdout, JSON.stringify(await stack.client.listFunctions())]) {
      expect(shown).to.not.contain(SECRET)
    }
    expect(logged.join('\n')).to.contain('fn=secretive').and.not.contain(SECRET)
  })

  it('refuses a value with a newline in one line that does not show it (400)', async () => {
    const error = await stack.client.updateFunction('secretive', {env: {TOKEN: `${SECRET}\nEVIL=1`}}).catch((error: Error) => error)
    expect((error as Error).message).to.equal('environment variable TOKEN: the value must be valid text without NUL, CR or newline characters')
    expect(logged.join('\n')).to.not.contain(SECRET)
  })

  it("gives each of many concurrent calls its own function's environment", async () => {
    const names = ['env-a', 'env-b', 'env-c', 'env-d']
    for (const name of names) await stack.client.createFunction(name, {image: TEST_IMAGES.sh, env: {WHO: `value-of-${name}`}})
    const calls = names.flatMap((name) => Array.from({length: 4}, () => name))
    const answers = await Promise.all(calls.map((name) => invoke(name, 'echo "$WHO"')))
    expect(answers.map((answer) => answer.stdout.toString())).to.deep.equal(calls.map((name) => `value-of-${name}\n`))
  })

  it('has the worker refuse hostile limits and env sent straight over NATS, running nothing and echoing no value', async () => {
    const nc = await connect({servers: stack.nats.url})
    try {
      const hostile: Array<[string, string]> = [
        [HEADER.pidsLimit, '-1'],
        [HEADER.memoryBytes, '--privileged'],
        [HEADER.cpus, '1000'],
        [HEADER.env, Buffer.from(`TOKEN=${SECRET}\r\n`).toString('base64')],
        [HEADER.env, Buffer.from(`--privileged=${SECRET}\n`).toString('base64')],
      ]
      for (const [name, value] of hostile) {
        const h = headers()
        const callId = randomUUID()
        h.set(HEADER.callId, callId)
        h.set(HEADER.function, 'inside')
        h.set(HEADER.image, TEST_IMAGES.sh)
        h.set(HEADER.timeoutMs, '5000')
        h.set(HEADER.network, 'none')
        h.set(HEADER.inputSize, '0')
        h.set(HEADER.replyTo, `amp.v1.reply.test.${callId}`)
        h.set(name, value)
        const answer = await nc.request(callSubject('inside'), new Uint8Array(0), {headers: h, timeout: 5000})
        expect(answer.headers?.get(HEADER.status), `${name}: ${value}`).to.equal('rejected')
        expect(answer.headers?.get(HEADER.error)).to.match(/^worker refused the call: /).and.not.contain(SECRET)
        expect(await containers(`label=amp.call=${callId}`)).to.deep.equal([])
      }
    } finally {
      await nc.close()
    }
    expect(logged.join('\n')).to.contain('call rejected').and.not.contain(SECRET)
  })

  it('carries an environment of almost 32 KiB next to a large input', async () => {
    const big = 'v'.repeat(32 * 1024 - 'BIG=\n'.length)
    await stack.client.createFunction('big-env', {image: TEST_IMAGES.sh, env: {BIG: big}})
    const input = `echo "\${#BIG}"; cat > /dev/null\n${'#'.repeat(3 * MiB)}\n`
    const result = await invoke('big-env', input)
    expect(result.exitCode, result.stderr.toString()).to.equal(0)
    expect(result.stdout.toString()).to.equal(`${big.length}\n`)
  })
})
