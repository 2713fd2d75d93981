import {expect} from 'chai'
import type {execa} from 'execa'
import {PassThrough} from 'node:stream'

import {ContainerStarts} from '../../../src/runtime/worker/container-events.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'
import {waitUntil} from '../../helpers/wait.js'

interface FakeRun {
  args: string[]
  stdout: PassThrough
  finish(result: {failed: boolean; shortMessage?: string}): void
}

/** Stands in for `docker events`: each run's stdout is written by the test, which also ends it. */
function fakeDocker() {
  const runs: FakeRun[] = []
  const exec = ((_file: string, args: string[]) => {
    const stdout = new PassThrough()
    let finish!: FakeRun['finish']
    const done = new Promise((resolve) => (finish = resolve))
    runs.push({args, stdout, finish})
    return Object.assign(done, {stdout, kill: () => finish({failed: true, shortMessage: 'killed'})})
  }) as unknown as typeof execa
  return {runs, exec}
}

const startEvent = (name: string, ms: number) =>
  JSON.stringify({status: 'start', Action: 'start', Type: 'container', Actor: {Attributes: {name, 'amp.worker': 'w1'}}, timeNano: ms * 1e6}) + '\n'

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('ContainerStarts (docker events)', () => {
  let starts: ContainerStarts | undefined
  afterEach(() => starts?.stop())

  it("follows only this worker's container start events, in a bounded window", () => {
    const docker = fakeDocker()
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec})
    starts.start()
    const args = docker.runs[0].args
    expect(args.slice(0, 9)).to.deep.equal(['events', '--filter', 'type=container', '--filter', 'event=start', '--filter', 'label=amp.worker=w1', '--format', '{{json .}}'])
    const since = Number(args[args.indexOf('--since') + 1])
    const until = Number(args[args.indexOf('--until') + 1])
    expect(until - since).to.be.within(60, 61)
  })

  it('gives the start time of a container seen before it was asked for, once', async () => {
    const docker = fakeDocker()
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec})
    starts.start()
    docker.runs[0].stdout.write(startEvent('amp-a', 1_700_000_000_123))
    await tick()
    expect(await starts.take('amp-a')).to.equal(1_700_000_000_123)
    expect(await starts.take('amp-a', 10)).to.equal(undefined)
  })

  it('waits a little for an event that arrives after the container exited, split across chunks', async () => {
    const docker = fakeDocker()
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec})
    starts.start()
    const asked = starts.take('amp-b', 5000)
    const line = startEvent('amp-b', 42_000)
    docker.runs[0].stdout.write('not json\n' + line.slice(0, 20))
    docker.runs[0].stdout.write(line.slice(20))
    expect(await asked).to.equal(42_000)
  })

  it('answers undefined when no event comes within the wait', async () => {
    const docker = fakeDocker()
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec})
    starts.start()
    expect(await starts.take('amp-never', 20)).to.equal(undefined)
  })

  it('starts the next window where the last one ended, so no event is missed', async () => {
    const docker = fakeDocker()
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec})
    starts.start()
    const first = docker.runs[0].args
    docker.runs[0].finish({failed: false})
    await tick()
    expect(docker.runs).to.have.length(2)
    const second = docker.runs[1].args
    expect(second[second.indexOf('--since') + 1]).to.equal(first[first.indexOf('--until') + 1])
  })

  it('when docker events fails: warns once, answers at once without waiting, and tries again', async () => {
    const docker = fakeDocker()
    const lines: string[] = []
    starts = new ContainerStarts({docker: 'docker', workerId: 'w1', exec: docker.exec, logger: createLogger({write: (line) => lines.push(line)})})
    starts.start()
    docker.runs[0].finish({failed: true, shortMessage: 'Cannot connect to the Docker daemon'})
    await tick()
    const started = Date.now()
    expect(await starts.take('amp-c', 5000)).to.equal(undefined)
    expect(Date.now() - started).to.be.below(1000)
    expect(lines).to.have.length(1)
    expect(lines[0]).to.match(/level=warn msg="docker events stopped.*Cannot connect to the Docker daemon/)
    await waitUntil('docker events to be run again', () => docker.runs.length >= 2, 5000, 20)
    expect(docker.runs).to.have.length(2)
  })
})
