import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {AmpCommand} from '../../base-command.js'
import {renderResult} from '../../render.js'
import {finalResult} from '../../runtime/client/client.js'
import {isAmpError} from '../../runtime/shared/errors.js'
import {type CallRecord, FINAL_STATES} from '../../runtime/shared/http-contract.js'
import {parseDuration} from '../../runtime/shared/validate.js'

export default class CallGet extends AmpCommand<typeof CallGet> {
  static override summary = 'Show the status of an asynchronous call, or its result once it has ended'
  static override description = `Once the call has ended, prints its result as amp function invoke does: the function's stdout to stdout, its stderr to stderr, and amp exits with the function's exit code; a call whose container never exited (timeout, could not run) fails with exit 105 or 106.
While it has not ended, prints "<callId> <state> (attempt N of M)" and exits 0; with --wait, amp waits for the end instead (exit 105 if --timeout passes first).
With --json, prints the call record {callId, function, state, attempts, maxAttempts, createdAt, ..., result} and exits as without --json.`
  static override examples = [
    {description: 'See how a call is doing', command: '<%= config.bin %> call get 3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2'},
    {description: 'Wait for its result and keep its output', command: '<%= config.bin %> call get 3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2 --wait > output.bin'},
    {description: 'Wait at most a minute, and get the record as JSON', command: '<%= config.bin %> call get 3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2 --wait --timeout 1m --json'},
  ]

  static override args = {
    callId: Args.string({name: 'CALL_ID', description: 'the call id that amp function invoke --async printed (also in Amp-Call-Id)', required: true}),
  }

  static override flags = {
    wait: Flags.boolean({description: 'wait until the call has ended'}),
    timeout: Flags.string({description: 'with --wait: how long to wait at most, e.g. 30s, 10m, 1h', dependsOn: ['wait'], defaultHelp: async () => '10m'}),
  }

  async run(): Promise<CallRecord> {
    const client = this.createClient()
    const record = this.flags.wait
      ? await client.waitForCall(this.args.callId, {timeoutMs: parseDuration(this.flags.timeout ?? '10m')})
      : await client.getCall(this.args.callId)
    if (!FINAL_STATES.has(record.state)) {
      this.log(`${record.callId} ${record.state} (attempt ${record.attempts} of ${record.maxAttempts})`)
      return record
    }
    try {
      await renderResult(finalResult(record), {json: this.jsonEnabled(), verbose: this.flags.verbose, note: (line) => this.logToStderr(line)})
    } catch (error) {
      // Under --json the record is the output, and amp exits as it does without --json.
      if (!(this.jsonEnabled() && isAmpError(error))) throw error
      process.exitCode = error.exit
    }
    return record
  }
}
