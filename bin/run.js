#!/usr/bin/env node
// When stderr is not a terminal (scripts, CI, systemd), keep each error on one line:
// oclif would otherwise wrap it at 80 columns. Set before oclif loads, which reads it once.
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '100000'

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
