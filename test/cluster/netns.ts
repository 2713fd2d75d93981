/**
 * Test "hosts" on one machine: each a network namespace with its own address on one bridge, and its
 * own hostname (a UTS namespace per process), so amp's labels and NATS/etcd addresses differ per host
 * as on real machines. Needs root and iproute2. Processes are entered with `nsenter --net` rather
 * than `ip netns exec`, which would remount /sys and hide the cgroup mounts dockerd needs.
 */
import {execa, type Options, type ResultPromise} from 'execa'
import {readdirSync, readFileSync} from 'node:fs'

const PREFIX = 'ampc-'
const BRIDGE = 'ampc-br'
const SUBNET = '10.213.0'
/** The bridge's own address: the test process (the "internet" side) reaches every host through it. */
export const GATEWAY = `${SUBNET}.1`

export interface Host {
  name: string
  ip: string
  /** The namespace's name (ip netns list). */
  ns: string
  /** The veth end on the bridge: down means the host's link is cut. */
  link: string
}

const ip = (args: string[]) => execa('ip', args)

/** Removes every namespace and link a previous run may have left (a killed test cannot clean up). */
export async function removeHosts(): Promise<void> {
  const listed = await execa('ip', ['-json', 'netns', 'list'], {reject: false})
  const names = listed.exitCode === 0 && listed.stdout.trim() ? (JSON.parse(listed.stdout) as Array<{name: string}>).map((entry) => entry.name) : []
  for (const ns of names.filter((name) => name.startsWith(PREFIX))) {
    for (const pid of await namespacePids(ns)) killTree(pid)
    await execa('ip', ['netns', 'del', ns], {reject: false})
  }
  const links = await execa('ip', ['-json', 'link', 'show'], {reject: false})
  const ours = links.exitCode === 0 ? (JSON.parse(links.stdout) as Array<{ifname: string}>).map((link) => link.ifname).filter((name) => name.startsWith(PREFIX)) : []
  // The bridge, and any veth end whose namespace went first.
  for (const name of ours) await execa('ip', ['link', 'del', name], {reject: false})
  while ((await execa('iptables', ['-D', ...FORWARD_RULE], {reject: false})).exitCode === 0);
}

/** dockerd sets the FORWARD policy to DROP, which (with br_netfilter) drops bridged packets too: let the hosts' own through. */
const FORWARD_RULE = ['FORWARD', '-i', BRIDGE, '-o', BRIDGE, '-j', 'ACCEPT']

/** Creates one host per name, addressed `10.213.0.<octet>`, all on one bridge with the test process at .1. */
export async function createHosts(specs: Record<string, number>): Promise<Record<string, Host>> {
  await removeHosts()
  await ip(['link', 'add', BRIDGE, 'type', 'bridge'])
  await ip(['addr', 'add', `${GATEWAY}/24`, 'dev', BRIDGE])
  await ip(['link', 'set', BRIDGE, 'up'])
  await execa('iptables', ['-I', ...FORWARD_RULE.slice(0, 1), '1', ...FORWARD_RULE.slice(1)], {reject: false})
  const hosts: Record<string, Host> = {}
  for (const [name, octet] of Object.entries(specs)) {
    const host = {name, ip: `${SUBNET}.${octet}`, ns: `${PREFIX}${name}`, link: `${PREFIX}${name}`}
    await ip(['netns', 'add', host.ns])
    await ip(['link', 'add', host.link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.ns])
    await ip(['link', 'set', host.link, 'master', BRIDGE, 'up'])
    await ip(['-n', host.ns, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0'])
    await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up'])
    await ip(['-n', host.ns, 'link', 'set', 'lo', 'up'])
    hosts[name] = host
  }
  return hosts
}

/** Starts `file args` on the host, with the host's name as its hostname; the pid is the program's own (every wrapper execs). */
export function runOn(host: Host, file: string, args: string[], options: Options = {}): ResultPromise {
  return execa(
    'nsenter',
    [`--net=/run/netns/${host.ns}`, 'unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host.name, file, ...args],
    {reject: false, cleanup: true, stdin: 'ignore', ...options},
  )
}

/** Cuts the host off the network (its veth on the bridge goes down); packets are dropped, nothing is closed. */
export async function cutLink(host: Host): Promise<void> {
  await ip(['link', 'set', host.link, 'down'])
}

export async function restoreLink(host: Host): Promise<void> {
  await ip(['link', 'set', host.link, 'up'])
}

/** Pids of the processes in the host's network namespace. */
export async function namespacePids(ns: string): Promise<number[]> {
  const result = await execa('ip', ['netns', 'pids', ns], {reject: false})
  return String(result.stdout).split('\n').filter(Boolean).map(Number)
}

/**
 * kill -9 a process and everything under it, found first (so nothing is reparented away while we
 * kill): as a power cut does to a host's programs, containers included.
 */
export function killTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // The parent pid is the 2nd field after the command in parentheses, which may hold spaces.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {
      // Gone meanwhile.
    }
  }
  const tree: number[] = []
  const visit = (pid: number) => {
    tree.push(pid)
    for (const child of children.get(pid) ?? []) visit(child)
  }
  visit(root)
  for (const pid of tree) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  return tree
}
