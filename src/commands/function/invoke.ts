import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {buffer} from 'node:stream/consumers'

import {AmpCommand} from '../../base-command.js'
import {renderResult, writeBytes} from '../../render.js'
import {type CallAccepted, checkCallbackUrl, type ResultEnvelope, toEnvelope} from '../../runtime/shared/http-contract.js'
import {checkName} from '../../runtime/shared/validate.js'
import type {StreamedCall} from '../../runtime/client/client.js'

/** The --json form of a call: outputs in base64, so any bytes survive; the 202 body for an asynchronous call. */
export type InvokeJson = CallAccepted | ResultEnvelope | StreamedCall

export default class FunctionInvoke extends AmpCommand<typeof FunctionInvoke> {
  static override summary = 'Call a function: stdin is its input, its stdout is written to stdout'
  static override description = `Reads all of stdin, runs the function once with it and writes the function's stdout to stdout and its stderr to stderr, byte for byte.
amp exits with the function's exit code; amp's own failures exit 100-111 (see README "Exit codes").
With --json, prints {callId, function, exitCode, stdout, stderr, stderrTruncated, durationMs, worker} with stdout and stderr in base64.
With --async (and always for a fire-and-forget function), amp returns once the call is durably queued: it prints the call id alone on stdout (with --json: {callId, function, state, statusUrl}) and exits 0; follow the call with amp call get.
With --stream, the function's stdout is written as the function writes it, and amp exits with its exit code once it ends. Its stderr is not shown when output was streamed (a streamed answer carries none): read it with amp function logs NAME --call ID (--verbose prints the call id). A call that ends before writing any stdout is shown as without --stream, stderr included. --stream cannot go with --json, --async or --callback-url.`
  static override aliases = ['fn:invoke']
  static override hiddenAliases = ['function:call', 'fn:call']
  static override examples = [
    {description: 'Call "test" with a file as input, keep its output and its log', command: '<%= config.bin %> function invoke test < input.txt > output.txt 2> log.txt'},
    {description: 'Call it with no input (otherwise it reads stdin until end of file)', command: '<%= config.bin %> fn invoke test < /dev/null'},
    {description: 'Get the whole outcome as JSON', command: '<%= config.bin %> fn invoke test --json < input.bin'},
    {description: 'Queue a call: prints its id at once; fetch the result later with amp call get ID --wait', command: '<%= config.bin %> fn invoke test --async < input.bin'},
    {description: "Show the function's output as it writes it", command: '<%= config.bin %> fn invoke test --stream < /dev/null'},
  ]

  static override args = {
    name: Args.string({description: 'name of the function to call', required: true}),
  }

  static override flags = {
    async: Flags.boolean({description: 'do not wait for the container: print the call id once the call is durably queued'}),
    'callback-url': Flags.string({description: 'POST the result to this http(s) URL when the call ends (implies --async)'}),
    stream: Flags.boolean({description: "write the function's stdout as it writes it (its stderr is then not shown: see amp function logs)"}),
  }

  async run(): Promise<InvokeJson> {
    // Refuse a bad name or server before waiting for input that would then be thrown away.
    const client = this.createClient()
    checkName(this.args.name)
    if (this.flags['callback-url'] !== undefined) checkCallbackUrl(this.flags['callback-url'])
    if (this.flags.stream && (this.jsonEnabled() || this.flags.async || this.flags['callback-url'] !== undefined)) {
      this.error('--stream cannot go with --json, --async or --callback-url: a streamed call writes raw stdout as it comes', {exit: 2})
    }
    if (process.stdin.isTTY) this.printToStderr('amp: reading the input from the terminal until Ctrl-D')
    const input = await buffer(process.stdin)
    const outcome = this.flags.stream
      ? // Each chunk as it arrives, at the pace stdout (a terminal, a pipe) takes it.
        await client.callStreamed(this.args.name, input, (chunk) => writeBytes(process.stdout, chunk))
      : await client.call(this.args.name, input, {async: this.flags.async, callbackUrl: this.flags['callback-url']})
    if (outcome.kind === 'streamed') {
      const {callId, exitCode} = outcome.call
      if (this.flags.verbose) this.printToStderr(`amp: call ${callId} exited ${exitCode}; its stderr: amp function logs ${this.args.name} --call ${callId}`)
      if (exitCode !== 0) process.exitCode = exitCode
      return outcome.call
    }
    if (outcome.kind === 'accepted') {
      // Also a fire-and-forget function called without --async: queued, which is not an error.
      const {callId} = outcome.accepted
      if (!this.jsonEnabled()) {
        this.log(callId)
        this.logToStderr(`queued; fetch the result with: amp call get ${callId} --wait`)
      }
      return outcome.accepted
    }
    // With --stream, a result that came whole had its stdout written already (by the sink above).
    const result = this.flags.stream ? {...outcome.result, stdout: Buffer.alloc(0)} : outcome.result
    await renderResult(result, {json: this.jsonEnabled(), verbose: this.flags.verbose, note: (line) => this.logToStderr(line)})
    return toEnvelope(outcome.result)
  }
}
