/**
 * Bundles the CLI into dist after tsc: dist/cli.js (oclif's execute, which bin/run.js loads) and
 * one file per command in dist/commands, sharing chunks in dist/chunks. Loading @oclif/core, undici
 * and yaml as a few bundled files instead of hundreds of modules is most of `amp --version`'s and
 * `amp function ls`'s startup time (bench/cli-startup.ts). The daemons' dependencies (NATS, etcd,
 * execa, prom-client...) stay external: they load from node_modules, and only the commands that
 * use them load them. tsc's output stays for the library (package.json "exports").
 */
import {build} from 'esbuild'
import {readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
/** On the hot path of every command: bundled. */
const BUNDLED = new Set(['@oclif/core', 'undici', 'yaml'])

/** A file of undici's own, for the plugin below that reroutes some of its requires. */
const UNDICI_FILE = /[\\/]node_modules[\\/]undici[\\/]lib[\\/]/

const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
const external = Object.keys(pjson.dependencies).filter((name) => !BUNDLED.has(name))

function commandFiles(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return commandFiles(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })
}

await build({
  absWorkingDir: root,
  entryPoints: [join(root, 'src/cli.ts'), ...commandFiles(join(root, 'src/commands'))].map((file) => relative(root, file)),
  outdir: 'dist',
  outbase: 'src',
  // Outside dist/commands, where oclif looks for commands.
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  minify: true,
  external,
  plugins: [
    {
      name: 'undici-lean',
      setup(b) {
        // `undici` itself (not its files) is request and Agent only, not undici's whole index (see the file).
        b.onResolve({filter: /^undici$/}, () => ({path: join(root, 'scripts/undici-lean.cjs')}))
        // HTTP/2 loaded when first used (see the file).
        b.onResolve({filter: /^\.\/client-h2\.js$/}, ({importer}) =>
          UNDICI_FILE.test(importer) ? {path: join(root, 'scripts/undici-h2-lazy.cjs')} : undefined,
        )
        // llhttp as WebAssembly without SIMD is undici's fallback for CPUs without it: 72 KB of
        // base64 that every command would read, so it stays in node_modules until needed.
        b.onResolve({filter: /\/llhttp-wasm\.js$/}, ({importer}) =>
          UNDICI_FILE.test(importer) ? {path: 'undici/lib/llhttp/llhttp-wasm.js', external: true} : undefined,
        )
      },
    },
  ],
  // Bundled CommonJS (oclif, undici) calls require() for node's own modules; ESM has none.
  banner: {js: "import {createRequire as __ampCreateRequire} from 'node:module';\nconst require = __ampCreateRequire(import.meta.url);"},
  logLevel: 'warning',
})
