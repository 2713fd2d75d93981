import {AmpCommand} from '../../base-command.js'
import type {FunctionSpec} from '../../runtime/function-spec.js'
import {formatDuration} from '../../runtime/validate.js'

export default class FunctionLs extends AmpCommand<typeof FunctionLs> {
  static override summary = 'List the functions'
  static override aliases = ['fn:ls']
  static override hiddenAliases = ['function:list', 'fn:list']
  static override examples = [
    {description: 'Show a table of the functions', command: '<%= config.bin %> function ls'},
    {description: 'Print them as a JSON array, for scripts', command: '<%= config.bin %> fn ls --json'},
  ]

  async run(): Promise<FunctionSpec[]> {
    const functions = await this.createClient().listFunctions()
    if (functions.length === 0) {
      this.log('No functions. Create one with: amp function create NAME IMAGE')
      return functions
    }
    const rows = [
      ['NAME', 'IMAGE', 'TIMEOUT', 'NETWORK', 'UPDATED'],
      ...functions.map((fn) => [fn.name, fn.image, formatDuration(fn.timeoutMs), fn.network, formatTime(fn.updatedAt)]),
    ]
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
    for (const row of rows) this.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd())
    return functions
  }
}

/** "2025-01-31 14:05:09Z": UTC, to the second. */
function formatTime(iso: string): string {
  const time = new Date(iso)
  return Number.isNaN(time.getTime()) ? iso : `${time.toISOString().slice(0, 19).replace('T', ' ')}Z`
}
