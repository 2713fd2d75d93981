/**
 * amp on eight test hosts (netns.ts): c1..c3 each run a NATS node (routes, JetStream) and an etcd
 * member; l1, l2 a listener each; w1..w3 a dockerd of their own and a worker using it. Every
 * listener and worker is given every NATS URL and every etcd endpoint. Each process can be killed
 * with -9 and started again with the same data, as after a crash.
 */
import {execa, type ResultPromise} from 'execa'
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {request} from 'undici'

import {createHosts, type Host, killTree, namespacePids, removeHosts, runOn} from './netns.js'

const AMP = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const ROOT = '/var/lib/amp-cluster'
const RUN = '/run/amp-cluster'
const NATS_PORT = 4222
const ETCD_PORT = 2379
const LISTENER_PORT = 4242
const WORKER_METRICS_PORT = 9100

export const HOSTS = {c1: 11, c2: 12, c3: 13, l1: 21, l2: 22, w1: 31, w2: 32, w3: 33}
const CONTROL = ['c1', 'c2', 'c3'] as const
const LISTENERS = ['l1', 'l2'] as const
const WORKERS = ['w1', 'w2', 'w3'] as const

/** A program on a test host: started, killed -9 (with all it started, containers included) and started again. */
export class Daemon {
  private child?: ResultPromise

  constructor(
    readonly name: string,
    readonly host: Host,
    private readonly command: () => {file: string; args: string[]; env?: Record<string, string>},
    private readonly ready: () => Promise<boolean>,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null
  }

  async start(withinMs = 60_000): Promise<void> {
    const {file, args, env} = this.command()
    const log = {file: this.logFile, append: true}
    this.child = runOn(this.host, file, args, {stdout: log, stderr: log, env: {NODE_EXTRA_CA_CERTS: '', ...env}})
    await this.waitReady(withinMs)
  }

  async waitReady(withinMs = 60_000): Promise<void> {
    const deadline = Date.now() + withinMs
    while (!(await this.ready().catch(() => false))) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) throw new Error(`${this.name} exited ${this.child.exitCode}: see ${this.logFile}`)
      if (Date.now() > deadline) throw new Error(`${this.name} not ready within ${withinMs} ms: see ${this.logFile}`)
      await sleep(200)
    }
  }

  /** kill -9, everything it started with it. */
  kill9(): void {
    if (this.child?.pid) killTree(this.child.pid)
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.child!.kill('SIGTERM')
    const exited = await Promise.race([this.child!.then(() => true), sleep(40_000).then(() => false)])
    if (!exited) this.kill9()
    await this.child
  }

  get pid(): number | undefined {
    return this.child?.pid
  }
}

async function answers(url: string, init: {method?: 'GET' | 'POST'; body?: string} = {}): Promise<string | undefined> {
  const response = await request(url, {...init, headersTimeout: 2000, bodyTimeout: 2000})
  const text = await response.body.text()
  return response.statusCode === 200 ? text : undefined
}

export class Cluster {
  readonly nats: Daemon[] = []
  readonly etcd: Daemon[] = []
  readonly dockerd: Daemon[] = []
  readonly listeners: Daemon[] = []
  readonly workers: Daemon[] = []

  private constructor(readonly hosts: Record<string, Host>) {}

  get natsUrls(): string {
    return CONTROL.map((name) => `nats://${this.hosts[name].ip}:${NATS_PORT}`).join(',')
  }

  get etcdUrls(): string {
    return CONTROL.map((name) => `http://${this.hosts[name].ip}:${ETCD_PORT}`).join(',')
  }

  get listenerUrls(): string[] {
    return LISTENERS.map((name) => `http://${this.hosts[name].ip}:${LISTENER_PORT}`)
  }

  dockerHost(worker: number): string {
    return `unix://${RUN}/${WORKERS[worker]}/docker.sock`
  }

  static async start(images: string[]): Promise<Cluster> {
    await cleanUp()
    const cluster = new Cluster(await createHosts(HOSTS))
    try {
      await cluster.startAll(images)
      return cluster
    } catch (error) {
      await cluster.close()
      throw error
    }
  }

  private async startAll(images: string[]): Promise<void> {
    mkdirSync(path.join(ROOT, 'logs'), {recursive: true})
    const log = (name: string) => path.join(ROOT, 'logs', `${name}.log`)
    const peers = CONTROL.map((name) => `e${name}=http://${this.hosts[name].ip}:2380`).join(',')
    for (const name of CONTROL) {
      const host = this.hosts[name]
      const dir = path.join(ROOT, name)
      mkdirSync(dir, {recursive: true})
      const config = path.join(dir, 'nats.conf')
      writeFileSync(
        config,
        [
          `server_name: ${name}`,
          `listen: ${host.ip}:${NATS_PORT}`,
          `http: ${host.ip}:8222`,
          // Streams reserve their max_bytes on every replica: amp's add up to 12 GiB (docs/deploy.md).
          `jetstream { store_dir: "${dir}/jetstream", max_memory_store: 256MB, max_file_store: 16GB }`,
          `cluster { name: amp, listen: ${host.ip}:6222, routes: [${CONTROL.map((peer) => `nats://${this.hosts[peer].ip}:6222`).join(', ')}] }`,
          '',
        ].join('\n'),
      )
      this.nats.push(
        new Daemon(`nats ${name}`, host, () => ({file: 'nats-server', args: ['-c', config]}), async () => Boolean(await answers(`http://${host.ip}:8222/healthz`)), log(`nats-${name}`)),
      )
      this.etcd.push(
        new Daemon(
          `etcd ${name}`,
          host,
          () => ({
            file: 'etcd',
            args: [
              ...['--name', `e${name}`, '--data-dir', `${dir}/etcd`],
              ...['--listen-client-urls', `http://${host.ip}:${ETCD_PORT}`, '--advertise-client-urls', `http://${host.ip}:${ETCD_PORT}`],
              ...['--listen-peer-urls', `http://${host.ip}:2380`, '--initial-advertise-peer-urls', `http://${host.ip}:2380`],
              ...['--initial-cluster', peers, '--initial-cluster-state', 'new', '--initial-cluster-token', 'amp-cluster-test'],
            ],
          }),
          async () => (await answers(`http://${host.ip}:${ETCD_PORT}/health`))?.includes('"true"') ?? false,
          log(`etcd-${name}`),
        ),
      )
    }
    // A NATS cluster and an etcd cluster each wait for their peers: start all members at once.
    await Promise.all([...this.nats, ...this.etcd].map((daemon) => daemon.start()))

    const saved = path.join(ROOT, 'images.tar')
    await execa('docker', ['save', '--output', saved, ...images])
    WORKERS.forEach((name, index) => {
      const host = this.hosts[name]
      const dir = path.join(RUN, name)
      const dockerHost = this.dockerHost(index)
      const docker = {DOCKER_HOST: dockerHost}
      this.dockerd.push(
        new Daemon(
          `dockerd ${name}`,
          host,
          () => ({
            file: 'dockerd',
            args: [
              ...['--data-root', path.join(ROOT, name, 'docker'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid')],
              ...['--host', dockerHost, '--bridge', 'none', '--iptables=false', '--ip-masq=false'],
            ],
          }),
          async () => (await execa('docker', ['version', '--format', '{{.Server.Version}}'], {env: docker, reject: false})).exitCode === 0,
          log(`dockerd-${name}`),
        ),
      )
      this.workers.push(
        new Daemon(
          `worker ${name}`,
          host,
          () => ({
            file: 'node',
            args: [AMP, 'worker', 'start', '--nats', this.natsUrls, '--concurrency', '2', '--runtime-dir', path.join(dir, 'amp')],
            env: {...docker, AMP_METRICS_PORT: String(WORKER_METRICS_PORT), AMP_METRICS_HOST: host.ip, AMP_LOG_FORMAT: 'json'},
          }),
          async () => Boolean(await answers(`http://${host.ip}:${WORKER_METRICS_PORT}/health/ready`)),
          log(`worker-${name}`),
        ),
      )
    })
    for (const name of WORKERS) mkdirSync(path.join(RUN, name, 'amp'), {recursive: true})
    await Promise.all(this.dockerd.map((daemon) => daemon.start()))
    await Promise.all(this.dockerd.map((_daemon, index) => execa('docker', ['load', '--input', saved], {env: {DOCKER_HOST: this.dockerHost(index)}})))

    for (const name of LISTENERS) {
      const host = this.hosts[name]
      this.listeners.push(
        new Daemon(
          `listener ${name}`,
          host,
          () => ({
            file: 'node',
            args: [AMP, 'listener', 'start', '--host', host.ip, '--port', String(LISTENER_PORT), '--nats', this.natsUrls, '--etcd', this.etcdUrls],
            env: {AMP_LOG_FORMAT: 'json'},
          }),
          async () => Boolean(await answers(`http://${host.ip}:${LISTENER_PORT}/_amp/v1/health/ready`)),
          log(`listener-${name}`),
        ),
      )
    }
    await Promise.all([...this.listeners, ...this.workers].map((daemon) => daemon.start()))
  }

  /** The NATS node that leads JetStream's meta group (from its monitoring /jsz). */
  async metaLeader(): Promise<Daemon> {
    for (const daemon of this.nats.filter((node) => node.running)) {
      const jsz = await answers(`http://${daemon.host.ip}:8222/jsz`).catch(() => undefined)
      const leader = jsz ? (JSON.parse(jsz) as {meta_cluster?: {leader?: string}}).meta_cluster?.leader : undefined
      const found = this.nats.find((node) => node.host.name === leader)
      if (found) return found
    }
    throw new Error('no NATS node names a JetStream meta leader')
  }

  /** The etcd member that leads (maintenance status through etcd's HTTP gateway). */
  async etcdLeader(): Promise<Daemon> {
    for (const daemon of this.etcd.filter((member) => member.running)) {
      const status = await answers(`http://${daemon.host.ip}:${ETCD_PORT}/v3/maintenance/status`, {method: 'POST', body: '{}'}).catch(() => undefined)
      if (!status) continue
      const {header, leader} = JSON.parse(status) as {header: {member_id: string}; leader: string}
      if (header.member_id === leader) return daemon
    }
    throw new Error('no etcd member says it leads')
  }

  /** amp's containers on one worker host's dockerd, running or not, with the pid of the worker that started each. */
  async containersOn(worker: number): Promise<Array<{name: string; pid: number}>> {
    const listed = await execa('docker', ['ps', '--all', '--filter', 'label=amp.managed=true', '--format', '{{.Names}}\t{{.Label "amp.worker-pid"}}'], {
      env: {DOCKER_HOST: this.dockerHost(worker)},
    })
    return listed.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => ({name: line.split('\t')[0], pid: Number(line.split('\t')[1])}))
  }

  /** Containers on every Docker host that no running worker owns: what a dead worker left. */
  async leftovers(): Promise<string[]> {
    const left: string[] = []
    for (const [index, worker] of this.workers.entries()) {
      if (!this.dockerd[index].running) continue
      const owner = worker.running ? worker.pid : undefined
      left.push(...(await this.containersOn(index)).filter((container) => container.pid !== owner).map((container) => `${WORKERS[index]}:${container.name}`))
    }
    return left
  }

  /** kill -9 every program of a host: its worker, its dockerd, containerd, the shims and the containers. */
  async killHost(worker: number): Promise<void> {
    const host = this.hosts[WORKERS[worker]]
    // The shims leave dockerd's process tree (they daemonize) but stay in the host's network namespace.
    for (const pid of await namespacePids(host.ns)) killTree(pid)
    this.workers[worker].kill9()
    this.dockerd[worker].kill9()
    await sleep(200)
  }

  /** Everything running again and ready, as before the fault. */
  async heal(): Promise<void> {
    for (const daemon of [...this.nats, ...this.etcd, ...this.dockerd]) if (!daemon.running) await daemon.start()
    await Promise.all([...this.nats, ...this.etcd].map((daemon) => daemon.waitReady()))
    for (const daemon of [...this.listeners, ...this.workers]) if (!daemon.running) await daemon.start()
    await Promise.all([...this.listeners, ...this.workers].map((daemon) => daemon.waitReady()))
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners, ...this.workers].map((daemon) => daemon.stop().catch(() => {})))
    await Promise.all([...this.dockerd, ...this.nats, ...this.etcd].map((daemon) => daemon.stop().catch(() => {})))
    await removeHosts()
  }
}

/** What an earlier run left: its hosts (and their programs) and its data; logs of this run stay in ROOT/logs. */
async function cleanUp(): Promise<void> {
  await removeHosts()
  // A dockerd killed with -9 leaves its containers' overlay mounts behind.
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => line.split(' ')[1]).filter((point) => point && (point.startsWith(`${ROOT}/`) || point.startsWith(`${RUN}/`)))
  for (const point of mounts.reverse()) await execa('umount', ['--lazy', point], {reject: false})
  rmSync(ROOT, {recursive: true, force: true})
  rmSync(RUN, {recursive: true, force: true})
}
