/**
 * Issue #5's test: many asynchronous calls through a listener and two workers, all separate
 * processes, while one worker is killed with -9 and nats-server is stopped and started again.
 * Every call must end exactly as expected, none lost, and only calls the dead worker was running
 * may run twice. AMP_CHAOS_CALLS sets how many calls: 200 by default, as `npm test` runs it (about
 * 2 minutes here, as Docker starts about 1.6 containers a second); `npm run bench:chaos` runs 1,000.
 */
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {request} from 'undici'

import type {CallRecord, DeadLetter} from '../../src/runtime/shared/http-contract.js'
import {containers, containersBesidesIdle} from '../helpers/containers.js'
import {ensureTestImages, TEST_IMAGES} from '../helpers/images.js'
import {startAmpDaemon, type AmpDaemon} from '../helpers/run-amp-process.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'
import {waitFor, waitUntil} from '../helpers/wait.js'

const CALLS = Number(process.env.AMP_CHAOS_CALLS ?? 200)
const CONCURRENCY = 4
/** Calls accepted but not yet finished, at most: keeps the run going while the faults happen. */
const BACKLOG = 40
/** Every tenth call goes to the failing function. */
const failing = (i: number) => i % 10 === 7
/** How long nats-server stays down. */
const OUTAGE_MS = 5000

/** A daemon's JSON log lines as they come, parsed. */
interface Logged {
  daemon: AmpDaemon
  lines: Array<Record<string, any>>
}

/** Calls any worker logged as finished: the client paces itself on it. */
const finishedIds = new Set<string>()

function follow(daemon: AmpDaemon): Logged {
  const logged: Logged = {daemon, lines: []}
  let rest = ''
  daemon.child.stderr?.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString()
    const parts = text.split('\n')
    rest = parts.pop() ?? ''
    for (const part of parts) {
      if (!part.startsWith('{')) continue
      try {
        const line = JSON.parse(part)
        logged.lines.push(line)
        if (line.msg === 'asynchronous call finished') finishedIds.add(String(line.call))
      } catch {
        // not a log line
      }
    }
  })
  return logged
}

const callsIn = (logged: Logged, msg: string) => logged.lines.filter((line) => line.msg === msg).map((line) => String(line.call))

interface Sent {
  index: number
  fn: 'cat' | 'fail'
  input: string
  callId?: string
  /** 503s (JetStream away) answered before the 202. */
  refused: number
}

describe('asynchronous calls under faults (issue #5)', function () {
  // Generous: a bound only against a hang; about 0.7 s a call here.
  this.timeout(Math.max(6 * 60_000, CALLS * 1500))
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let listener: Logged
  let url: string
  const workers: Logged[] = []

  const startWorker = async () => {
    const daemon = await startAmpDaemon([
      'worker', 'start', '--nats', nats.url, '--docker', DOCKER, '--concurrency', String(CONCURRENCY),
      '--async-lease', '6s', '--async-retry-base', '200ms', '--log-format', 'json',
    ])
    const logged = follow(daemon)
    workers.push(logged)
    return logged
  }

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    ;[nats, etcd] = await Promise.all([startNats(), startEtcd()])
    listener = follow(
      await startAmpDaemon([
        'listener', 'start', '--port', '0', '--nats', nats.url, '--etcd', etcd.url, '--async-lease', '6s', '--log-format', 'json',
        '--max-inflight', '256',
      ]),
    )
    url = listener.daemon.ready.listener.url
    await startWorker()
    await startWorker()
    for (const [name, spec] of [
      ['cat', {image: TEST_IMAGES.cat}],
      ['fail', {image: TEST_IMAGES.fail, retries: 0}],
    ] as const) {
      const res = await request(`${url}/_amp/v1/functions/${name}?replace=true`, {method: 'PUT', body: JSON.stringify(spec)})
      expect(res.statusCode, await res.body.text()).to.be.oneOf([200, 201])
    }
    // Both pull asynchronous calls before the first is sent.
    for (const worker of workers) await waitFor('a worker to take asynchronous calls', async () => (callsIn(worker, 'taking asynchronous calls').length > 0 ? true : undefined))
  })

  after(async () => {
    // AMP_CHAOS_LOGS=<dir> keeps the daemons' logs, to see what happened when this fails.
    const keep = process.env.AMP_CHAOS_LOGS
    if (keep) {
      mkdirSync(keep, {recursive: true})
      for (const [i, logged] of [listener, ...workers].entries()) if (logged) writeFileSync(path.join(keep, `daemon-${i}.log`), logged.daemon.stderr())
    }
    for (const {daemon} of [...workers, listener].filter(Boolean)) daemon.child.kill('SIGKILL')
    await Promise.all([nats?.stop(), etcd?.stop()])
  })

  it('ends every call exactly as expected through a worker kill -9 and a nats-server restart; only the dead worker\'s calls run twice', async () => {
    const started = Date.now()
    const sent: Sent[] = Array.from({length: CALLS}, (_, index) => ({
      index,
      fn: failing(index) ? 'fail' : 'cat',
      input: `call ${index} ${randomBytes(12).toString('hex')}\n`,
      refused: 0,
    }))
    const finished = () => finishedIds.size
    const unexpected: string[] = []

    // The client: 8 callers, never more than BACKLOG calls waiting, a 503 tried again after a moment.
    let next = 0
    let accepted = 0
    let phase = 'calling'
    const caller = async () => {
      while (next < sent.length) {
        const call = sent[next++]
        // Bounds only for a broken run: the calls waiting drain and a 503 passes within seconds, outage included.
        await waitUntil(() => `room for call ${call.index} (accepted ${accepted}, finished ${finished()})`, () => accepted - finished() < BACKLOG, 120_000)
        await waitUntil(() => `call ${call.index} to be taken (refused ${call.refused} times)`, async () => {
          const answer = await post(`${url}/${call.fn}`, call.input).catch((error: Error) => ({status: 0, text: error.message}))
          if (answer.status === 202) {
            call.callId = JSON.parse(answer.text).callId
            accepted++
            return true
          }
          if (answer.status !== 503) {
            unexpected.push(`call ${call.index}: ${answer.status} ${answer.text}`)
            return true
          }
          call.refused++
          return false
        }, 120_000, 500)
      }
    }
    const callers = Promise.all(Array.from({length: 8}, caller))
    const progress = process.env.AMP_CHAOS_LOGS
      ? setInterval(() => process.stderr.write(`chaos: ${phase}, accepted ${accepted}, finished ${finished()}, read ${records.size}, ${Math.round((Date.now() - started) / 1000)} s\n`), 5000)
      : undefined

    // The faults, a quarter and half way through.
    const victim = workers[0]
    const records = new Map<string, CallRecord>()
    await waitFor('a quarter of the calls to finish', async () => (finished() >= CALLS / 4 ? true : undefined), CALLS * 2000, 200)
    // kill -9 while it runs a full set of containers, if it gets there soon.
    const pid = victim.daemon.pid
    let runningAtKill = 0
    await waitFor('the victim to run containers', async () => {
      runningAtKill = (await containers(`label=amp.worker-pid=${pid}`, {running: true})).length
      return runningAtKill >= CONCURRENCY ? true : undefined
    }, 20_000, 50).catch(() => undefined)
    phase = 'victim killed'
    victim.daemon.child.kill('SIGKILL')
    await victim.daemon.child.catch(() => {})
    // What it had started and not finished when it died (its log is complete once it exited).
    const victimDone = new Set(callsIn(victim, 'asynchronous call finished'))
    const inFlight = new Set(callsIn(victim, 'asynchronous call started').filter((id) => !victimDone.has(id)))

    await waitFor('half of the calls to finish', async () => (finished() >= CALLS / 2 ? true : undefined), CALLS * 2000, 200)
    phase = 'nats down'
    nats.kill('SIGTERM')
    await sleep(OUTAGE_MS) // the outage itself
    await nats.restart()

    phase = 'nats restarted'
    await callers
    expect(unexpected, 'answers other than 202 or 503').to.deep.equal([])
    expect(sent.filter((call) => !call.callId), 'calls never accepted').to.deep.equal([])

    // Every record final, through the listener.
    phase = 'reading'
    let index = 0
    const reader = async () => {
      for (let call = sent[index++]; call; call = sent[index++]) {
        const id = call.callId!
        await waitFor(`call ${id} to end`, async () => {
          const res = await request(`${url}/_amp/v1/calls/${id}?wait=20s`).catch(() => undefined)
          if (!res) return undefined
          const text = await res.body.text()
          if (res.statusCode !== 200) return undefined
          const record = JSON.parse(text) as CallRecord
          if (record.state !== 'succeeded' && record.state !== 'failed') return undefined
          records.set(id, record)
          return true
        }, 10 * 60_000, 500)
      }
    }
    await Promise.all(Array.from({length: 8}, reader))

    clearInterval(progress)
    const wrong: string[] = []
    for (const call of sent) {
      const record = records.get(call.callId!)!
      if (call.fn === 'cat') {
        const stdout = record.result ? Buffer.from(record.result.stdout, 'base64').toString() : undefined
        if (record.state !== 'succeeded' || record.deadLetter || stdout !== call.input || record.result?.exitCode !== 0) {
          wrong.push(`${call.callId} (cat): ${record.state} ${JSON.stringify(stdout)} ${record.error ?? ''}`)
        }
      } else if (record.state !== 'failed' || !record.deadLetter || record.result?.exitCode !== 3) {
        wrong.push(`${call.callId} (fail): ${record.state} deadLetter ${record.deadLetter} exit ${record.result?.exitCode} ${record.error ?? ''}`)
      }
    }
    expect(wrong, 'calls that did not end as expected').to.deep.equal([])

    // Each failed call in the dead letters exactly once, and nothing else.
    const res = await request(`${url}/_amp/v1/dead-letters?function=fail&limit=1000`)
    const {deadLetters} = (await res.body.json()) as {deadLetters: DeadLetter[]}
    const lettered = deadLetters.map((letter) => letter.callId).sort()
    expect(lettered).to.deep.equal(sent.filter((call) => call.fn === 'fail').map((call) => call.callId!).sort())

    // Runs per call, from every worker's log. A run after a failed attempt is a retry, as designed (a cat
    // call can fail under this load, e.g. docker refusing a container); any other extra run is a
    // duplicate, and only the victim's unfinished calls may have one.
    const runs = new Map<string, number>()
    const retries = new Map<string, number>()
    for (const worker of workers) {
      for (const id of callsIn(worker, 'asynchronous call started')) runs.set(id, (runs.get(id) ?? 0) + 1)
      for (const id of callsIn(worker, 'asynchronous call failed: trying again')) retries.set(id, (retries.get(id) ?? 0) + 1)
    }
    const ids = new Set(sent.map((call) => call.callId!))
    expect([...runs.keys()].filter((id) => !ids.has(id)), 'calls run that no caller was told about').to.deep.equal([])
    expect(sent.filter((call) => !runs.has(call.callId!)), 'calls never started').to.deep.equal([])
    const duplicates = new Map([...runs].map(([id, count]) => [id, count - 1 - (retries.get(id) ?? 0)]))
    const twice = [...duplicates].filter(([, extra]) => extra > 0).map(([id]) => id)
    // What the workers logged about a call, to tell why it ran again when an expectation fails.
    const story = (id: string) =>
      workers
        .flatMap((worker, index) => worker.lines.filter((line) => line.call === id).map((line) => `w${index} ${line.time} ${line.msg} ${line.attempt ?? ''}`))
        .sort((a, b) => a.split(' ')[1].localeCompare(b.split(' ')[1]))
        .join('; ')
    const odd = [...duplicates].filter(([id, extra]) => extra > 1 || extra < 0 || (extra > 0 && !inFlight.has(id)))
    expect(odd.map(([id]) => `${id}: ${story(id)}`), 'calls run again without a failed attempt, beyond one re-run of a victim call').to.deep.equal([])
    // The victim held at most CONCURRENCY calls in container slots, and each slot's previous call may
    // still have been writing its outcome (its container done, the slot already given to the next).
    expect(twice.length).to.be.at.most(2 * CONCURRENCY)

    // No container left by any of these workers (the survivor sweeps the victim's; its own idle pre-started ones stay).
    const pids = workers.map((worker) => worker.daemon.pid)
    const left = await waitFor('no containers left', async () => {
      // The dead victim's idle pre-started containers must be swept too: only live workers keep theirs.
      const found = (await Promise.all(pids.map((p) => (p === pid ? containers : containersBesidesIdle)(`label=amp.worker-pid=${p}`)))).flat()
      return found.length === 0 ? found : undefined
    }, 90_000, 1000)
    expect(left).to.deep.equal([])

    const refused = sent.filter((call) => call.refused > 0)
    console.log(
      `      [measured] ${CALLS} async calls (${sent.filter((call) => call.fn === 'fail').length} failing): ` +
        `ran twice ${twice.length}, retried after a failed attempt ${retries.size} (victim had ${inFlight.size} started, ${runningAtKill} containers running at kill -9), ` +
        `503 then retried ${refused.length} calls (${refused.reduce((sum, call) => sum + call.refused, 0)} 503s), ` +
        `${Math.round((Date.now() - started) / 1000)} s`,
    )
  })
})

async function post(target: string, body: string): Promise<{status: number; text: string}> {
  const res = await request(target, {method: 'POST', body, headers: {prefer: 'respond-async'}})
  return {status: res.statusCode, text: await res.body.text()}
}
