/**
 * Runs an amp command in-process with @oclif/test, from the TypeScript sources, loaded as bin/dev.js
 * loads them (see there why: oclif cannot map ./dist to ./src under TypeScript 7, and a build's
 * oclif.manifest.json would run stale code from ./dist). Also isolates each test from the user's
 * config file and AMP_* variables.
 */
import {Config, Plugin, run as runOclif, settings} from '@oclif/core'
import {captureOutput, runCommand} from '@oclif/test'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
pjson.oclif = JSON.parse(JSON.stringify(pjson.oclif).replaceAll('./dist/', './src/'))
settings.enableAutoTranspile = false

export interface AmpRun<T> {
  result?: T
  stdout: string
  stderr: string
  error?: Error & {oclif?: {exit?: number}; suggestions?: string[]}
  /** What the process would exit with: the error's exit code, else process.exitCode, else 0. */
  exitCode: number
}

/** amp's oclif Config from the sources, as bin/dev.js loads it. */
export async function loadConfig(): Promise<Config> {
  const rootPlugin = new Plugin({root, pjson, isRoot: true, ignoreManifest: true})
  await rootPlugin.load()
  const config = await Config.load({root, pjson, plugins: new Map([[rootPlugin.name, rootPlugin]])})
  await config.loadPluginsAndCommands({force: true})
  return config
}

/**
 * `exact`: pass `args` to oclif as they are. runCommand joins them with spaces and splits them
 * again, which changes any argument with whitespace or quotes in it (fuzzing sends those).
 */
export async function runAmp<T = unknown>(args: string[], options: {print?: boolean; exact?: boolean} = {}): Promise<AmpRun<T>> {
  process.exitCode = undefined
  // A fresh Config per run, as a real `amp` process would have.
  const config = await loadConfig()
  const run = options.exact
    ? await captureOutput<T>(() => runOclif(args, config), {print: options.print})
    : await runCommand<T>(args, config, {print: options.print})
  const exitCode = run.error ? (run.error.oclif?.exit ?? 1) : Number(process.exitCode ?? 0)
  process.exitCode = undefined
  return {...run, exitCode}
}

/**
 * Mocha hooks: a fresh HOME (so no $HOME/.config/amp/amp.yaml applies) and no AMP_* variables in
 * each test; returns the temp HOME's path getter.
 */
export function isolateEnvironment(): () => string {
  const saved = {...process.env}
  let home = ''
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'amp-test-home-'))
    for (const key of Object.keys(process.env)) if (key.startsWith('AMP_')) delete process.env[key]
    process.env.HOME = home
  })
  afterEach(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key]
    Object.assign(process.env, saved)
    rmSync(home, {recursive: true, force: true})
    process.exitCode = undefined
  })
  return () => home
}
