/**
 * Where a worker finds the in-container runner (docs/runner.md) and keeps its containers' sockets,
 * and the checks that decide whether it can use them at all. Docker bind-mounts both paths, so
 * they must be on the Docker host: this machine, for the local engine amp is made for.
 */
import {randomBytes} from 'node:crypto'
import {accessSync, constants, existsSync, mkdirSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {MOUNT_PATH, processAlive, type RunnerFiles} from './container-runner.js'

/** A unix socket path has at most 107 bytes; the runner's sockets are `<dir>/<n>.sock`. */
const MAX_SOCKET_DIR = 90
/** This worker's socket directory: `<pid>-<6 hex>`, so a later worker can tell a dead one's and remove it. */
const WORKER_DIR = /^(\d+)-[0-9a-f]{6}$/

/** The runner as `npm run build` makes it: dist/runner/amp-runner of amp's own package. */
export function defaultRunnerBinary(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  // Up to the package root, wherever the build put this module (dist/runtime, dist/chunks, src/runtime).
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return path.join(dir, 'dist', 'runner', 'amp-runner')
}

/** Where sockets go unless --runtime-dir says: systemd's RuntimeDirectory=, /run/amp for root, $XDG_RUNTIME_DIR/amp, or the temp dir. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const systemd = env.RUNTIME_DIRECTORY?.split(':')[0]
  if (systemd) return systemd
  if (process.getuid?.() === 0) return '/run/amp'
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'amp')
  return path.join(tmpdir(), `amp-${process.getuid?.() ?? 'user'}`)
}

export interface PreparedRunner {
  /** The files to mount, when the runner can be used. */
  files?: RunnerFiles
  /** Why it cannot, when it cannot. */
  off?: string
  /** Removes this worker's socket directory (on close). */
  cleanup(): void
}

/**
 * Checks the runner binary and makes this worker's socket directory (0700: only this user and
 * dockerd, which is root, look inside). Removes the socket directories of dead workers too.
 */
export function prepareRunner(options: {binary?: string; runtimeDir?: string; enabled?: boolean}): PreparedRunner {
  const none = {cleanup: () => {}}
  if (options.enabled === false) return {...none, off: 'turned off (--no-runner)'}
  const binary = path.resolve(options.binary ?? defaultRunnerBinary())
  const runtimeDir = path.resolve(options.runtimeDir ?? defaultRuntimeDir())
  try {
    accessSync(binary, constants.R_OK | constants.X_OK)
  } catch {
    return {...none, off: `no runner at ${binary} (npm run build makes it; it needs a C compiler)`}
  }
  for (const [what, file] of [['runner', binary], ['runtime dir', runtimeDir]]) {
    if (!MOUNT_PATH.test(file)) return {...none, off: `the ${what} path ${JSON.stringify(file)} has characters docker cannot mount: use letters, digits, '.', '_', '-' and '/'`}
  }
  const socketDir = path.join(runtimeDir, `${process.pid}-${randomBytes(3).toString('hex')}`)
  if (socketDir.length > MAX_SOCKET_DIR) return {...none, off: `the runtime dir ${runtimeDir} is too long a path for unix sockets: set a shorter --runtime-dir`}
  try {
    mkdirSync(runtimeDir, {recursive: true, mode: 0o700})
    removeDeadWorkerDirs(runtimeDir)
    mkdirSync(socketDir, {mode: 0o700})
  } catch (error) {
    return {...none, off: `cannot make ${socketDir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message} (set --runtime-dir)`}
  }
  return {files: {binary, socketDir}, cleanup: () => rmSync(socketDir, {recursive: true, force: true})}
}

function removeDeadWorkerDirs(runtimeDir: string): void {
  for (const entry of readdirSync(runtimeDir)) {
    const pid = WORKER_DIR.exec(entry)?.[1]
    if (pid && !processAlive(Number(pid))) rmSync(path.join(runtimeDir, entry), {recursive: true, force: true})
  }
}
