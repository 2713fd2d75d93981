import * as Args from '@oclif/core/args'

import {AmpCommand} from '../../base-command.js'
import type {RemoveResult} from '../../runtime/client/client.js'
import {EXIT} from '../../runtime/shared/errors.js'

export default class FunctionRm extends AmpCommand<typeof FunctionRm> {
  static override summary = 'Remove functions'
  static override description =
    'Removes every named function that exists. If some do not exist, they are named on stderr and amp exits 102 after removing the others.'
  static override aliases = ['fn:rm']
  static override hiddenAliases = ['function:remove', 'fn:remove']
  static override strict = false
  static override examples = [
    {description: 'Remove one function', command: '<%= config.bin %> function rm test'},
    {description: 'Remove several', command: '<%= config.bin %> fn rm test other'},
  ]

  static override args = {
    name: Args.string({description: 'names of the functions to remove', required: true}),
  }

  async run(): Promise<RemoveResult> {
    // strict = false: every positional argument is a name.
    const result = await this.createClient().removeFunctions(this.positional)
    for (const spec of result.removed) this.log(`Removed function ${spec.name}`)
    if (result.missing.length > 0) {
      if (this.jsonEnabled()) {
        process.exitCode = EXIT.notFound
        return result
      }
      this.error(`no function named ${result.missing.join(', ')}`, {
        exit: EXIT.notFound,
        suggestions: ['See the registered functions with: amp function ls'],
      })
    }
    return result
  }
}
