/**
 * The built CLI's oclif and undici: dist/vendor.cjs, one CommonJS file that scripts/bundle.ts makes,
 * which the bundled commands import through `#cli-vendor` (package.json "imports"). Compiling it was
 * the largest part of a command's start on Node 20, which has no compile cache of its own, so it is compiled
 * with V8's code cache: written after the first run of each command under
 * $XDG_CACHE_HOME/amp/v8 (or ~/.cache/amp/v8), then reused until the bundle or node changes.
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off. Any failure to read or write the cache only costs time.
 */
import {mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {homedir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {setFlagsFromString} from 'node:v8'
import vm from 'node:vm'

const FILE = fileURLToPath(new URL('vendor.cjs', import.meta.url))
/**
 * The CommonJS wrapper, on the first line so that the bundle's line numbers (and source map) hold,
 * with the import() that the bundle's own calls become (scripts/bundle.ts).
 */
const WRAP = '(function (exports, require, module, __filename, __dirname, __ampImport) { '

let loaded: Record<string, unknown> | undefined

/** One of the vendored modules, by the specifier the sources import it by ('@oclif/core/flags', 'undici'). */
export function vendor(specifier: string): Record<string, unknown> {
  loaded ??= load()
  const found = loaded[specifier]
  if (found === undefined) throw new Error(`${specifier} is not in ${FILE}: run npm run build`)
  return found as Record<string, unknown>
}

function load(): Record<string, unknown> {
  // V8 takes a code cache only under the flags it was made with, and commands that make requests
  // set this one (BaseCommand.createClient): set from the start, the cache a command writes at exit
  // is one the next start can use.
  setFlagsFromString('--liftoff-only')
  const source = readFileSync(FILE, 'utf8')
  let cache: CacheFile | undefined
  let cachedData: Buffer | undefined
  try {
    cache = cacheFile()
    if (cache) cachedData = readFileSync(cache.file)
  } catch {}
  const script = new vm.Script(`${WRAP}${source}\n})`, {filename: FILE, cachedData})
  const module = {exports: {}}
  // oclif imports each command's (ESM) file.
  const importModule = (specifier: string) => import(specifier)
  script.runInThisContext()(module.exports, createRequire(FILE), module, FILE, path.dirname(FILE), importModule)
  // At exit, the cache holds every function this command compiled, not only the file's top level.
  if (cache && (!cachedData || script.cachedDataRejected)) process.once('exit', () => save(cache, script))
  return module.exports
}

interface CacheFile {
  dir: string
  file: string
  /** Node's and this bundle's part of the name: files without it are from other builds or nodes. */
  build: string
}

/** Where this command's code cache is: one per bundle, node and command (its first words). */
function cacheFile(): CacheFile | undefined {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return undefined
  let base = process.env.XDG_CACHE_HOME
  if (!base || !path.isAbsolute(base)) {
    const home = homedir()
    if (!home) return undefined
    base = path.join(home, '.cache')
  }
  const dir = path.join(base, 'amp', 'v8')
  // The file's size and time say which build it is: no hash of its half megabyte at every start.
  const {size, mtimeMs} = statSync(FILE)
  const build = `${process.version}-${process.arch}-${size}-${Math.trunc(mtimeMs)}`
  return {dir, file: path.join(dir, `${build}--${commandWords()}.bin`), build: `${build}--`}
}

/** `function-ls` for `amp function ls --json`: the leading words that look like topics and commands. */
function commandWords(): string {
  const words: string[] = []
  for (const arg of process.argv.slice(2, 4)) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(arg)) break
    words.push(arg)
  }
  return words.join('-') || 'root'
}

function save(cache: CacheFile, script: vm.Script): void {
  try {
    mkdirSync(cache.dir, {recursive: true, mode: 0o700})
    // Written whole, then renamed: a command starting meanwhile reads the old file or the new one.
    const partial = `${cache.file}.${process.pid}.tmp`
    writeFileSync(partial, script.createCachedData(), {mode: 0o600})
    renameSync(partial, cache.file)
    for (const name of readdirSync(cache.dir)) {
      if (!name.startsWith(cache.build)) rmSync(path.join(cache.dir, name), {force: true})
    }
  } catch {}
}
