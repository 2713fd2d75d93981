import * as Flags from '@oclif/core/flags'

import {AmpCommand} from '../../base-command.js'
import {formatTable, formatTime} from '../../render.js'
import {MAX_DEAD_LETTERS} from '../../runtime/shared/http-contract.js'
import type {DeadLetter} from '../../runtime/shared/http-contract.js'

export default class CallDeadLetters extends AmpCommand<typeof CallDeadLetters> {
  static override summary = 'List the asynchronous calls that failed for good (after all their retries)'
  static override description = `Prints a table of the dead letters, newest last: call id, function, attempts, when it failed and the last error.
With --json, prints {"deadLetters": [{callId, function, attempts, failedAt, error, exitCode?}, ...]}.`
  static override examples = [
    {description: 'List the dead letters', command: '<%= config.bin %> call dead-letters'},
    {description: 'The last 10 of one function, as JSON', command: '<%= config.bin %> call dead-letters --function test --limit 10 --json'},
  ]

  static override flags = {
    function: Flags.string({description: 'only the calls of this function'}),
    limit: Flags.integer({description: `most letters to list, the newest (1-${MAX_DEAD_LETTERS})`, min: 1, max: MAX_DEAD_LETTERS, defaultHelp: async () => '100'}),
  }

  async run(): Promise<{deadLetters: DeadLetter[]}> {
    const deadLetters = await this.createClient().deadLetters({function: this.flags.function, limit: this.flags.limit})
    if (deadLetters.length === 0) {
      // stdout stays empty, so `amp call dead-letters | wc -l` counts letters.
      if (!this.jsonEnabled()) this.logToStderr('No dead letters.')
      return {deadLetters}
    }
    const rows = [
      ['CALL ID', 'FUNCTION', 'ATTEMPTS', 'FAILED AT', 'ERROR'],
      ...deadLetters.map((letter) => [letter.callId, letter.function, String(letter.attempts), formatTime(letter.failedAt), letter.error]),
    ]
    for (const line of formatTable(rows)) this.log(line)
    return {deadLetters}
  }
}
