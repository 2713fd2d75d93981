/**
 * Bundles the CLI into dist after tsc, in two parts:
 * - dist/vendor.cjs: oclif and undici, the modules every command starts with, as one CommonJS file.
 *   dist/cli-vendor.js (src/cli-vendor.ts) loads it with V8's code cache, which only CommonJS can
 *   have on Node 20: compiling them was most of a command's start (bench/cli-startup.ts).
 * - dist/cli.js (oclif's execute, which bin/run.js loads), one file per command in dist/commands and per hook in dist/hooks,
 *   sharing chunks in dist/chunks. Their imports of oclif and undici become `#cli-vendor` (package.json
 *   "imports"): one copy of each, from the vendor file.
 * yaml is bundled too, loaded when there is a config file to read. The daemons' dependencies (NATS,
 * etcd, execa, prom-client...) stay external: they load from node_modules, and only the commands
 * that use them load them. tsc's output stays for the library (package.json "exports").
 */
import {build, type Plugin} from 'esbuild'
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
/** On the hot path of every command: in dist/vendor.cjs, by the specifiers the sources import. */
const VENDORED = ['@oclif/core/args', '@oclif/core/command', '@oclif/core/errors', '@oclif/core/execute', '@oclif/core/flags', '@oclif/core/help', 'undici']
/** Not external: oclif and undici (in the vendor file) and yaml (bundled, imported when a config file is read). */
const BUNDLED = new Set(['@oclif/core', 'undici', 'yaml'])

/** A file of undici's own, for the plugin below that reroutes some of its requires. */
const UNDICI_FILE = /[\\/]node_modules[\\/]undici[\\/]lib[\\/]/
/** oclif's plugin loader, whose minimatch the plugin below replaces. */
const OCLIF_PLUGIN_LOADER = /[\\/]@oclif[\\/]core[\\/]lib[\\/]config[\\/]plugin-loader\.js$/

const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
const external = [...Object.keys(pjson.dependencies).filter((name) => !BUNDLED.has(name)), '#cli-vendor']

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })
}

/** What the vendor file leaves out or loads late (see each file). */
const leanStartup: Plugin = {
  name: 'lean-startup',
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
    // Plain package names in oclif.plugins match by string equality, not a RegExp per name (see the file).
    b.onResolve({filter: /^minimatch$/}, ({importer}) =>
      OCLIF_PLUGIN_LOADER.test(importer) ? {path: join(root, 'scripts/minimatch-literal.cjs')} : undefined,
    )
  },
}

await build({
  absWorkingDir: root,
  stdin: {
    // Getters: each package starts when a command first imports it (`amp --version` needs no undici).
    contents: `module.exports = {${VENDORED.map((specifier) => `get ${JSON.stringify(specifier)}() { return require(${JSON.stringify(specifier)}) }`).join(', ')}}`,
    resolveDir: root,
    sourcefile: 'vendor-entry.cjs',
  },
  outfile: 'dist/vendor.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  minify: true,
  plugins: [leanStartup],
  logLevel: 'warning',
})

// CommonJS run through vm.Script has no import() of its own (only an experimental option that warns
// on stderr and spoils the code cache): oclif's imports of command files call the loader's instead.
const vendorFile = join(root, 'dist/vendor.cjs')
const vendorCode = readFileSync(vendorFile, 'utf8')
const DYNAMIC_IMPORT = /(?<![\w$.'"`])import\(/g
if ((vendorCode.match(DYNAMIC_IMPORT) ?? []).length === 0) throw new Error('bundle: no import() in dist/vendor.cjs; is oclif still loading commands with it?')
writeFileSync(vendorFile, vendorCode.replaceAll(DYNAMIC_IMPORT, '__ampImport('))

/** What each vendored module exports, for the ESM stubs below. */
const vendored = createRequire(import.meta.url)(join(root, 'dist/vendor.cjs')) as Record<string, Record<string, unknown>>

/** The sources' imports of oclif and undici: the vendor file's, by name. */
const vendorStubs: Plugin = {
  name: 'vendor-stubs',
  setup(b) {
    b.onResolve({filter: /^(@oclif\/core(\/.*)?|undici)$/}, ({path}) =>
      VENDORED.includes(path)
        ? {path, namespace: 'vendor'}
        : {errors: [{text: `${path} is not in dist/vendor.cjs: add it to VENDORED in scripts/bundle.ts`}]},
    )
    b.onLoad({filter: /.*/, namespace: 'vendor'}, ({path}) => {
      const names = Object.keys(vendored[path]).filter((name) => name !== 'default' && name !== '__esModule')
      return {
        contents: `import {vendor} from '#cli-vendor'\nexport const {${names.join(', ')}} = vendor(${JSON.stringify(path)})\n`,
        loader: 'js',
      }
    })
  },
}

await build({
  absWorkingDir: root,
  // The hooks too (package.json oclif.hooks): oclif loads them by path, as it does the commands.
  entryPoints: [join(root, 'src/cli.ts'), ...sourceFiles(join(root, 'src/commands')), ...sourceFiles(join(root, 'src/hooks'))].map((file) =>
    relative(root, file),
  ),
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
  plugins: [vendorStubs],
  // Bundled CommonJS calls require() for node's own modules; ESM has none.
  banner: {js: "import {createRequire as __ampCreateRequire} from 'node:module';\nconst require = __ampCreateRequire(import.meta.url);"},
  logLevel: 'warning',
})
