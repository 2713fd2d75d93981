import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {AmpCommand} from '../../base-command.js'
import type {LogLine} from '../../runtime/shared/log-query.js'

/** "TIME CALL-ID LINE": every line says which call wrote it. */
export function formatLogLine(line: LogLine): string {
  return `${line.time} ${line.callId} ${line.line}`
}

export default class FunctionLogs extends AmpCommand<typeof FunctionLogs> {
  static override summary = "Show what a function's calls wrote on stderr, each line tagged with its call id"
  static override description = `Prints one line per log line, oldest first: TIME CALL-ID LINE. Lines are kept in JetStream for a bounded time and size (by default 24h, 1GiB for all functions, 1MiB per call; see README "Logs").
With --follow, keeps printing new lines as calls write them, until Ctrl-C.
With --json, prints each line as one JSON object {time, function, callId, worker, line} on a line of its own (NDJSON), and nothing else.`
  static override aliases = ['fn:logs']
  static override examples = [
    {description: 'Everything "test" logged in the last 24 hours', command: '<%= config.bin %> function logs test'},
    {description: 'The log of one call (its id is in the Amp-Call-Id header and in amp fn invoke -v)', command: '<%= config.bin %> fn logs test --call 3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2'},
    {description: 'The last ten minutes, then new lines as they come', command: '<%= config.bin %> fn logs test --since 10m --follow'},
    {description: 'One JSON object per line, for scripts', command: '<%= config.bin %> fn logs test --since 1h --json | jq -r .line'},
  ]

  static override args = {
    name: Args.string({description: 'name of the function', required: true}),
  }

  static override flags = {
    call: Flags.string({description: 'only the lines of this call id'}),
    since: Flags.string({description: 'only lines from this long ago on (e.g. 10m, 2h), or from a time (e.g. 2025-01-31T14:00:00Z)'}),
    follow: Flags.boolean({char: 'f', description: 'keep printing new lines as calls write them, until Ctrl-C'}),
  }

  async run(): Promise<void> {
    const {name} = this.args
    const {call, since, follow} = this.flags
    const lines = await this.createClient().logs(name, {callId: call, since, follow})
    const json = this.jsonEnabled()
    if (follow && !json && process.stderr.isTTY) this.logToStderr(`amp: following the log of ${name}; Ctrl-C to stop`)
    let count = 0
    for await (const line of lines) {
      count++
      if (json) this.printJsonLine(line)
      else this.log(formatLogLine(line))
    }
    if (count === 0 && !json) {
      this.logToStderr(`amp: no log lines for ${name}${call ? ` call ${call}` : ''}${since ? ` since ${since}` : ''}`)
    }
  }
}
