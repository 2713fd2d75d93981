#!/usr/bin/env node
// Runs the CLI from src without building; works as ./bin/dev.js and as `node bin/dev.js`.
// oclif's own development mode does not work here: it maps ./dist to ./src by reading tsconfig.json
// through the TypeScript JS API, which TypeScript 7 (native tsc) no longer has, and it would use an
// oclif.manifest.json left by `npm run build`, i.e. stale code from ./dist. So: load tsx here, point
// oclif at the sources and load the root plugin without its manifest.
import {readFile} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'
import {register} from 'tsx/esm/api'

// As in run.js: one-line errors when stderr is not a terminal (oclif reads this once, when it loads).
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '100000'
const {Config, execute, Plugin, settings} = await import('@oclif/core')

register()
const root = fileURLToPath(new URL('..', import.meta.url))
const pjson = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
pjson.oclif = JSON.parse(JSON.stringify(pjson.oclif).replaceAll('./dist/', './src/'))
settings.enableAutoTranspile = false
// Not execute({development: true}): that also turns on oclif debug mode, which prints a stack trace
// under every error, so the CLI would not behave as the built one does.
process.env.NODE_ENV ??= 'development'

const rootPlugin = new Plugin({root, pjson, isRoot: true, ignoreManifest: true})
await rootPlugin.load()
const config = await Config.load({root, pjson, plugins: new Map([[rootPlugin.name, rootPlugin]])})
// Given plugins, oclif skips the ones package.json names (plugin-help): load them as usual.
await config.loadPluginsAndCommands({force: true})

await execute({loadOptions: config})
