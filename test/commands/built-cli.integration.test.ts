import {expect} from 'chai'
import {execa} from 'execa'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {EXIT} from '../../src/runtime/shared/errors.js'
import {createFunction, startTestStack, type StackWithoutWorker} from '../helpers/stack.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const RUN = path.join(ROOT, 'bin/run.js')
const CLI = path.join(ROOT, 'dist/cli.js')
/** oclif and undici, loaded with V8's code cache (src/cli-vendor.ts). */
const VENDOR = path.join(ROOT, 'dist/vendor.cjs')

/** The newest modification time of the files under dir. */
function newest(dir: string): number {
  return Math.max(
    ...readdirSync(dir, {withFileTypes: true}).map((entry) => {
      const file = path.join(dir, entry.name)
      return entry.isDirectory() ? newest(file) : statSync(file).mtimeMs
    }),
  )
}

/**
 * The installed entry, bin/run.js, on the bundle `npm run build` makes (scripts/bundle.ts): oclif,
 * undici and the commands in a few files, the daemons' dependencies and the plugins from
 * node_modules. Every other CLI test runs the sources (bin/dev.js); this one catches what only
 * bundling can break. Builds first when dist is missing or older than src.
 */
describe('the built CLI (bin/run.js on the esbuild bundle)', function () {
  this.timeout(180_000)
  let stack: StackWithoutWorker
  let home: string

  /** `server`: AMP_SERVER, the test listener's unless given; null for none. `node`: node's own options. */
  const amp = async (args: string[], server: string | null = stack.listener.url, node: string[] = [], env: Record<string, string> = {}) => {
    const res = await execa('node', [...node, RUN, ...args], {
      reject: false,
      extendEnv: false,
      env: {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, NODE_EXTRA_CA_CERTS: '', ...(server === null ? {} : {AMP_SERVER: server}), ...env},
    })
    return {exitCode: res.exitCode, stdout: String(res.stdout), stderr: String(res.stderr)}
  }

  before(async () => {
    let built = 0
    try {
      built = statSync(CLI).mtimeMs
    } catch {}
    if (built < newest(path.join(ROOT, 'src'))) await execa('npm', ['run', 'build'], {cwd: ROOT, env: {NODE_EXTRA_CA_CERTS: ''}})
    home = mkdtempSync(path.join(tmpdir(), 'amp-built-'))
    stack = await startTestStack({worker: false, docker: false})
    await createFunction(stack.listener, 'shout', {image: 'amp-test/cat:1'})
  })

  after(async () => {
    await stack?.stop()
    if (home) rmSync(home, {recursive: true, force: true})
  })

  it('prints its version', async () => {
    const {exitCode, stdout} = await amp(['--version'])
    expect(exitCode).to.equal(0)
    expect(stdout).to.match(/^amp\/\d+\.\d+\.\d+ \S+ node-v/)
  })

  it('lists functions from a real listener, as a table and as JSON', async () => {
    const table = await amp(['function', 'ls'])
    expect(table.exitCode, table.stderr).to.equal(0)
    expect(table.stdout).to.match(/^NAME +IMAGE/).and.match(/^shout +amp-test\/cat:1/m)
    const json = await amp(['fn', 'ls', '--json'])
    expect(JSON.parse(json.stdout).map((fn: {name: string}) => fn.name)).to.deep.equal(['shout'])
  })

  it("lists functions without loading node's TLS or HTTP/2 (the bundle loads them when used)", async () => {
    // Prints the node modules the process loaded, on stderr, as it exits.
    const preload = path.join(home, 'loaded.cjs')
    writeFileSync(preload, "process.on('exit', () => process.stderr.write('\\nloaded: ' + JSON.stringify(process.moduleLoadList) + '\\n'))\n")
    const {exitCode, stdout, stderr} = await amp(['function', 'ls'], stack.listener.url, ['--require', preload])
    expect(exitCode, stderr).to.equal(0)
    expect(stdout).to.match(/^shout +amp-test\/cat:1/m)
    const loaded = JSON.parse(stderr.slice(stderr.indexOf('loaded: ') + 'loaded: '.length)) as string[]
    expect(loaded).to.include('NativeModule http').and.not.include('NativeModule tls').and.not.include('NativeModule http2')
  })

  it("bundles undici's HTTP/2 half (loaded on first use) instead of requiring a node_modules copy that would not share undici's internals", () => {
    const built = [VENDOR, path.join(ROOT, 'dist/cli.js'), ...readdirSync(path.join(ROOT, 'dist/chunks')).map((name) => path.join(ROOT, 'dist/chunks', name))]
    const code = built.filter((file) => file.endsWith('.js')).map((file) => readFileSync(file, 'utf8'))
    expect(code.some((text) => text.includes('undici/lib/dispatcher/client-h2'))).to.equal(false)
    expect(readFileSync(VENDOR, 'utf8')).to.contain('HTTP2_HEADER_AUTHORITY')
  })

  it("finds undici's llhttp without SIMD in node_modules, where the bundle leaves it", () => {
    expect(readFileSync(VENDOR, 'utf8')).to.contain('undici/lib/llhttp/llhttp-wasm.js')
    const wasm: unknown = createRequire(VENDOR)('undici/lib/llhttp/llhttp-wasm.js')
    expect(Buffer.isBuffer(wasm)).to.equal(true)
  })

  it('creates, shows and removes a function (requests with a method and a JSON body, through the bundled undici)', async () => {
    const created = await amp(['function', 'create', 'made', 'amp-test/cat:1', '--timeout', '7s', '--json'])
    expect(created.exitCode, created.stderr).to.equal(0)
    expect(JSON.parse(created.stdout).function).to.include({name: 'made', image: 'amp-test/cat:1', timeoutMs: 7000})
    const again = await amp(['function', 'create', 'made', 'amp-test/cat:1'])
    expect(again.exitCode, 'a second create of one name').to.equal(EXIT.exists)
    const removed = await amp(['function', 'rm', 'made'])
    expect(removed.exitCode, removed.stderr).to.equal(0)
    const gone = await amp(['function', 'inspect', 'made'])
    expect(gone.exitCode).to.equal(EXIT.notFound)
  })

  it('reads a YAML config file (yaml is a chunk of its own, loaded only then)', async () => {
    const file = path.join(home, 'amp.yaml')
    writeFileSync(file, 'server: http://127.0.0.1:9\n')
    const {exitCode, stderr} = await amp(['function', 'ls', '--use-config', file], null)
    expect(exitCode, stderr).to.equal(EXIT.unreachable)
    expect(stderr).to.contain('cannot reach the listener at http://127.0.0.1:9')
    writeFileSync(file, 'server: [unclosed\n')
    const broken = await amp(['function', 'ls', '--use-config', file])
    expect(broken.exitCode).to.equal(EXIT.config)
    expect(broken.stderr).to.contain('is not valid YAML')
  })

  it('shows help through @oclif/plugin-help and refuses a bad flag with one line (exit 2)', async () => {
    const help = await amp(['help', 'function', 'ls'])
    expect(help.exitCode, help.stderr).to.equal(0)
    expect(help.stdout).to.contain('List the functions').and.contain('--quiet')
    const bad = await amp(['function', 'ls', '--nope'])
    expect(bad.exitCode).to.equal(EXIT.usage)
    expect(bad.stderr.trim().split('\n')).to.have.length(1)
  })

  it('takes global options before the command words (a command_not_found hook, bundled with oclif from the vendor file)', async () => {
    const unreachable = await amp(['--server', 'http://127.0.0.1:1', 'fn', 'ls'], null)
    expect(unreachable.exitCode, unreachable.stderr).to.equal(EXIT.unreachable)
    expect(unreachable.stderr).to.contain('cannot reach the listener at http://127.0.0.1:1')
    const listed = await amp([`--server=${stack.listener.url}`, '-v', 'function', 'ls', '-q'], null)
    expect(listed.exitCode, listed.stderr).to.equal(0)
    expect(listed.stdout).to.equal('shout')
    expect(listed.stderr).to.contain('level=debug')
    const unknown = await amp(['--nope', 'fn', 'ls'])
    expect(unknown.exitCode).to.equal(EXIT.usage)
    expect(unknown.stderr).to.contain('unknown option --nope before the command')
    // Bundled: no import of a second oclif from node_modules.
    expect(readFileSync(path.join(ROOT, 'dist/hooks/global-options-first.js'), 'utf8')).to.not.match(/from\s*["']@oclif\/core/)
  })

  it('runs a daemon, whose dependencies (NATS, etcd) load from node_modules, and stops it on SIGTERM', async () => {
    const child = execa('node', [RUN, 'listener', 'start', '--port', '0', '--nats', stack.nats.url, '--etcd', stack.etcd.url, '--json'], {
      reject: false,
      extendEnv: false,
      env: {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, NODE_EXTRA_CA_CERTS: ''},
    })
    let stdout = ''
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        if (stdout.includes('\n')) resolve(stdout.slice(0, stdout.indexOf('\n')))
      })
      void child.then((result) => reject(new Error(`listener exited early: ${String(result.stderr)}`)))
    })
    const ready = JSON.parse(line) as {ready: boolean; listener: {url: string}}
    expect(ready.ready).to.equal(true)
    const listed = await amp(['function', 'ls', '-q'], ready.listener.url)
    expect(listed.stdout).to.equal('shout')
    child.kill('SIGTERM')
    expect((await child).exitCode).to.equal(0)
  })

  describe("V8's code cache of oclif and undici (src/cli-vendor.ts)", () => {
    let cacheHome: string
    let cacheDir: string
    const cached = () => {
      try {
        return readdirSync(cacheDir).sort()
      } catch {
        return []
      }
    }
    const ls = (env: Record<string, string> = {}) => amp(['function', 'ls', '-q'], stack.listener.url, [], {XDG_CACHE_HOME: cacheHome, ...env})

    beforeEach(() => {
      cacheHome = mkdtempSync(path.join(tmpdir(), 'amp-v8-cache-'))
      cacheDir = path.join(cacheHome, 'amp', 'v8')
    })
    afterEach(() => rmSync(cacheHome, {recursive: true, force: true}))

    it('writes one private file per command on its first run, and the next run uses it as it is', async () => {
      const first = await ls()
      expect(first.exitCode, first.stderr).to.equal(0)
      expect(first.stdout).to.equal('shout')
      const files = cached()
      expect(files).to.have.length(1)
      expect(files[0]).to.match(new RegExp(`^${process.version}-${process.arch}-\\d+-\\d+--function-ls\\.bin$`))
      const file = path.join(cacheDir, files[0])
      expect(statSync(file).mode & 0o777).to.equal(0o600)
      expect(statSync(cacheDir).mode & 0o777).to.equal(0o700)
      const written = readFileSync(file)
      // V8 would refuse a cache that does not fit, and the command would write a new one.
      const second = await ls()
      expect(second.stdout).to.equal('shout')
      expect(Buffer.compare(readFileSync(file), written), 'the cache was rewritten: V8 refused it').to.equal(0)
      const version = await amp(['--version'], null, [], {XDG_CACHE_HOME: cacheHome})
      expect(version.exitCode).to.equal(0)
      expect(cached().map((name) => name.slice(name.indexOf('--')))).to.deep.equal(['--function-ls.bin', '--root.bin'])
    })

    it('replaces a cache V8 refuses (corrupt) and answers as usual', async () => {
      await ls()
      const file = path.join(cacheDir, cached()[0])
      writeFileSync(file, Buffer.from('not a code cache'))
      const run = await ls()
      expect(run.exitCode, run.stderr).to.equal(0)
      expect(run.stdout).to.equal('shout')
      expect(run.stderr).to.equal('')
      expect(readFileSync(file).toString()).to.not.equal('not a code cache')
    })

    it("removes the files of other builds and nodes, and keeps none with NODE_DISABLE_COMPILE_CACHE", async () => {
      const disabled = await ls({NODE_DISABLE_COMPILE_CACHE: '1'})
      expect(disabled.stdout).to.equal('shout')
      expect(cached()).to.deep.equal([])
      mkdirSync(cacheDir, {recursive: true})
      writeFileSync(path.join(cacheDir, 'v18.0.0-x64-1-1--function-ls.bin'), 'old')
      await ls()
      expect(cached()).to.have.length(1)
      expect(cached()[0]).to.match(/^v\d+\.\d+\.\d+-/).and.not.match(/^v18\.0\.0/)
    })

    it('runs as usual, with nothing on stderr, when the cache cannot be written', async () => {
      // A file where the cache directory would be.
      writeFileSync(path.join(cacheHome, 'amp'), '')
      const run = await ls()
      expect(run.exitCode).to.equal(0)
      expect(run.stdout).to.equal('shout')
      expect(run.stderr).to.equal('')
    })
  })
})
