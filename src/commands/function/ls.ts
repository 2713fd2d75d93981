import * as Flags from '@oclif/core/flags'

import {AmpCommand} from '../../base-command.js'
import {formatTable, formatTime} from '../../render.js'
import type {FunctionSpec} from '../../runtime/shared/function-spec.js'
import {formatDuration} from '../../runtime/shared/validate.js'

export default class FunctionLs extends AmpCommand<typeof FunctionLs> {
  static override summary = 'List the functions'
  static override aliases = ['fn:ls']
  static override hiddenAliases = ['function:list', 'fn:list']
  static override examples = [
    {description: 'Show a table of the functions', command: '<%= config.bin %> function ls'},
    {description: 'Print the names only, one per line, for scripts', command: '<%= config.bin %> fn ls -q'},
    {description: 'Remove the functions whose names start with "ci-"', command: "<%= config.bin %> fn ls -q | grep '^ci-' | xargs -r <%= config.bin %> fn rm"},
    {description: 'Print them as a JSON array, for scripts', command: '<%= config.bin %> fn ls --json'},
  ]

  static override flags = {
    quiet: Flags.boolean({
      char: 'q',
      description: 'print only the names, one per line (nothing when there are none); --json output is the same with or without it',
    }),
  }

  async run(): Promise<FunctionSpec[]> {
    const functions = await this.createClient().listFunctions()
    if (this.flags.quiet) {
      for (const fn of functions) this.log(fn.name)
      return functions
    }
    if (functions.length === 0) {
      this.log('No functions. Create one with: amp function create NAME IMAGE')
      return functions
    }
    const rows = [
      ['NAME', 'IMAGE', 'TIMEOUT', 'NETWORK', 'CALLS', 'RETRIES', 'PRESTART', 'REUSE', 'UPDATED'],
      ...functions.map((fn) => [
        fn.name,
        fn.image,
        formatDuration(fn.timeoutMs),
        fn.network,
        fn.fireAndForget ? 'fire-and-forget' : 'sync',
        String(fn.retries),
        String(fn.prestart),
        fn.reuse ? 'yes' : 'no',
        formatTime(fn.updatedAt),
      ]),
    ]
    for (const line of formatTable(rows)) this.log(line)
    return functions
  }
}
