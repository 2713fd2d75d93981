/**
 * `amp` as its own process (bin/dev.js), with pipes or on a pseudo-terminal, for what only a real
 * process shows: whether its output is coloured or has a spinner, and shell completion; and the
 * daemons as processes, for faults only a process has (kill -9, SIGTERM, exit codes).
 */
import {execa, type Result, type ResultPromise} from 'execa'
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

export const DEV = fileURLToPath(new URL('../../bin/dev.js', import.meta.url))

/**
 * How long a daemon stopped with SIGTERM may drain before execa's SIGKILL: the worker's drain
 * deadline (DEFAULT_DRAIN_TIMEOUT_MS, 30 s) and a margin. execa's own 5 s would kill a slow but
 * clean drain and report it as a crash.
 */
export const DAEMON_KILL_AFTER_MS = 35_000

/** ANSI escape sequences: colour, cursor movement, line erasing (what a spinner needs). */
export const ANSI_ESCAPE = /\u001B\[/

/** A clean environment: no FORCE_COLOR, NO_COLOR or AMP_* from the shell that runs the tests. */
export function cleanEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, NODE_EXTRA_CA_CERTS: '', TERM: 'xterm-256color', ...extra}
}

/** Runs amp with stdin, stdout and stderr on pipes (as in a script or CI), and waits for it; stdin is `input`, or empty. */
export async function ampPiped(args: string[], env: Record<string, string>, input = '') {
  const result = await execa('node', [DEV, ...args], {reject: false, extendEnv: false, env, input, stripFinalNewline: false})
  return {exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr)}
}

/** True when util-linux `script` can give a command a pseudo-terminal. */
export async function hasScript(): Promise<boolean> {
  const result = await execa('script', ['--version'], {reject: false})
  return result.exitCode === 0
}

/**
 * Starts amp on a pseudo-terminal (util-linux `script`): its stdin, stdout and stderr are a TTY,
 * and everything it writes comes back on `output()`, stdout and stderr together.
 */
export interface TerminalRun {
  /** Resolves when amp (and script) exit. */
  child: Promise<unknown>
  output: () => string
  /** Sends a signal to amp itself (script's child), as Ctrl-C on the terminal would. */
  signal: (signal: NodeJS.Signals) => void
}

/** `columns`: the terminal's width; `script` gives a terminal of width 0 unless told. */
export function ampOnTerminal(args: string[], env: Record<string, string>, options: {columns?: number} = {}): TerminalRun {
  const size = options.columns ? `stty cols ${options.columns} rows 40 && ` : ''
  const command = size + ['exec', 'node', DEV, ...args].map(shellQuote).join(' ')
  const child: ResultPromise = execa('script', ['--quiet', '--return', '--command', command, '/dev/null'], {
    reject: false,
    extendEnv: false,
    env,
    stdin: 'ignore',
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  return {
    child,
    output: () => output,
    signal(signal) {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
      for (const pid of children) process.kill(Number(pid), signal)
    },
  }
}

/** Quotes one word for `script --command` (which runs it with the shell). */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}

/** A daemon (`amp listener start`, `amp worker start`) running as its own OS process, as systemd runs it. */
export interface AmpDaemon {
  child: ResultPromise
  pid: number
  /** The JSON line it printed on stdout once ready (`--json`): listener.url, worker.id... */
  ready: Record<string, any>
  /** Everything it logged on stderr so far. */
  stderr(): string
  /** Sends `signal` and resolves with the exit code (undefined when a signal ended it). */
  stop(signal: NodeJS.Signals): Promise<number | undefined>
}

const daemons = new Set<ResultPromise>()
// A failing test must not leave daemons behind (mocha runs with `exit: true`).
process.once('exit', () => {
  for (const child of daemons) child.kill('SIGKILL')
})

/** Starts `amp <args> --json` from the sources and resolves once it is ready. */
export async function startAmpDaemon(args: string[], env: Record<string, string> = {}): Promise<AmpDaemon> {
  // No forceKillAfterDelay: a draining daemon may take longer than execa's 5 s before SIGKILL.
  const child = execa('node', [DEV, ...args, '--json'], {
    reject: false,
    env: {NODE_EXTRA_CA_CERTS: '', ...env},
    stdin: 'ignore',
    forceKillAfterDelay: false,
  })
  daemons.add(child)
  void child.finally(() => daemons.delete(child))
  let stderr = ''
  let stdout = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`amp ${args.join(' ')} did not get ready:\n${stderr}`)), 60_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (stdout.includes('\n')) {
        clearTimeout(timer)
        resolve(stdout.slice(0, stdout.indexOf('\n')))
      }
    })
    void child.then(() => reject(new Error(`amp ${args.join(' ')} exited early:\n${stderr}`)))
  })
  return {
    child,
    pid: child.pid!,
    ready: JSON.parse(line),
    stderr: () => stderr,
    async stop(signal) {
      child.kill(signal)
      const result: Result = await child
      return result.exitCode
    },
  }
}
