#!/usr/bin/env node
// When stderr is not a terminal (scripts, CI, systemd), keep each error on one line:
// oclif would otherwise wrap it at 80 columns. Set before oclif loads, which reads it once.
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '100000'

// Node >= 22.1 keeps V8's compiled code of the bundle on disk between runs (module compile cache);
// Node 20 has no such API, so this does nothing there.
const {default: nodeModule} = await import('node:module')
nodeModule.enableCompileCache?.()

// oclif from the bundle that `npm run build` makes (scripts/bundle.ts): the same execute, loaded in
// a few files instead of hundreds, which is most of a command's startup time.
const {execute} = await import('../dist/cli.js')
await execute({dir: import.meta.url})
