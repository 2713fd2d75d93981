import {Args} from '@oclif/core'
import {buffer} from 'node:stream/consumers'

import {AmpCommand} from '../../base-command.js'
import {type ResultEnvelope, toEnvelope} from '../../runtime/http-contract.js'
import {checkName} from '../../runtime/validate.js'

/** The --json form of a call: outputs in base64, so any bytes survive. */
export type InvokeJson = ResultEnvelope

export default class FunctionInvoke extends AmpCommand<typeof FunctionInvoke> {
  static override summary = 'Call a function: stdin is its input, its stdout is written to stdout'
  static override description = `Reads all of stdin, runs the function once with it and writes the function's stdout to stdout and its stderr to stderr, byte for byte.
amp exits with the function's exit code; amp's own failures exit 100-111 (see README "Exit codes").
With --json, prints {callId, function, exitCode, stdout, stderr, stderrTruncated, durationMs, worker} with stdout and stderr in base64.`
  static override aliases = ['fn:invoke']
  static override hiddenAliases = ['function:call', 'fn:call']
  static override examples = [
    {description: 'Call "test" with a file as input, keep its output and its log', command: '<%= config.bin %> function invoke test < input.txt > output.txt 2> log.txt'},
    {description: 'Call it with no input (otherwise it reads stdin until end of file)', command: '<%= config.bin %> fn invoke test < /dev/null'},
    {description: 'Get the whole outcome as JSON', command: '<%= config.bin %> fn invoke test --json < input.bin'},
  ]

  static override args = {
    name: Args.string({description: 'name of the function to call', required: true}),
  }

  async run(): Promise<InvokeJson> {
    // Refuse a bad name or server before waiting for input that would then be thrown away.
    const client = this.createClient()
    checkName(this.args.name)
    if (process.stdin.isTTY) process.stderr.write('amp: reading the input from the terminal until Ctrl-D\n')
    const input = await buffer(process.stdin)
    const result = await client.invoke(this.args.name, input)
    if (!this.jsonEnabled()) {
      process.stderr.write(result.stderr)
      process.stdout.write(result.stdout)
      if (result.stderrTruncated) {
        // On a line of its own, even if the cut log ends mid-line.
        const newline = result.stderr.length > 0 && result.stderr.at(-1) !== 0x0a ? '\n' : ''
        this.logToStderr(`${newline}amp: the function's stderr was cut to its first ${result.stderr.length} bytes (call ${result.callId})`)
      }
      if (this.flags.verbose) {
        this.logToStderr(
          `amp: call ${result.callId} ran on worker ${result.worker} in ${result.durationMs}ms and exited ${result.exitCode}`,
        )
      }
    }
    // The function's own exit code becomes amp's (process.exitCode, so buffered output is flushed first).
    if (result.exitCode !== 0) process.exitCode = result.exitCode
    return toEnvelope(result)
  }
}
