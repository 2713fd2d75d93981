import * as Args from '@oclif/core/args'

import {AmpCommand} from '../../base-command.js'
import {formatTable, formatTime} from '../../render.js'
import {formatBytes} from '../../runtime/shared/bytes.js'
import type {FunctionSpec} from '../../runtime/shared/function-spec.js'
import {formatDuration} from '../../runtime/shared/validate.js'

export default class FunctionInspect extends AmpCommand<typeof FunctionInspect> {
  static override summary = "Show all of a function's settings"
  static override description = `Prints the image, timeout, network, container limits, the names of its environment variables (never their values), whether its calls are fire-and-forget, the retries of a failed async call, its pre-started or warm containers, creation and last change time of the function, and the URL that calls it.
With --json, prints the function as the listener shows it: {name, image, timeoutMs, network, memoryBytes, cpus, pidsLimit, envKeys, fireAndForget, retries, prestart, reuse, reuseMaxCalls, createdAt, updatedAt}.`
  static override aliases = ['fn:inspect']
  static override examples = [
    {description: 'Show the settings of "test"', command: '<%= config.bin %> function inspect test'},
    {description: 'Get its image in a script', command: '<%= config.bin %> fn inspect test --json | jq -r .image'},
  ]

  static override args = {
    name: Args.string({description: 'name of the function', required: true}),
  }

  async run(): Promise<FunctionSpec> {
    const client = this.createClient()
    const spec = await client.getFunction(this.args.name)
    const rows = [
      ['Name:', spec.name],
      ['Image:', spec.image],
      ['Timeout:', formatDuration(spec.timeoutMs)],
      ['Network:', spec.network],
      ['Memory:', formatBytes(spec.memoryBytes, 'setting')],
      ['CPUs:', String(spec.cpus)],
      ['Pids:', String(spec.pidsLimit)],
      ['Env:', spec.envKeys.length === 0 ? '-' : `${spec.envKeys.join(', ')} (values hidden)`],
      ['Calls:', spec.fireAndForget ? 'fire-and-forget (every call is asynchronous)' : 'synchronous (asynchronous with --async)'],
      ['Retries:', `${spec.retries} (a failed async call runs at most ${spec.retries + 1} times)`],
      ['Prestart:', prestartLine(spec)],
      ['Reuse:', spec.reuse ? `yes: a warm container serves up to ${spec.reuseMaxCalls} calls, each in a fresh process` : 'no (a fresh container per call)'],
      ['Created:', formatTime(spec.createdAt)],
      ['Updated:', formatTime(spec.updatedAt)],
      ['Call:', `POST ${client.server}/${spec.name}`],
    ]
    for (const line of formatTable(rows)) this.log(line)
    return spec
  }
}

function prestartLine(spec: FunctionSpec): string {
  if (spec.reuse) return `up to ${spec.prestart} warm containers per worker`
  return spec.prestart === 0 ? '0 (every call starts its container from scratch)' : `up to ${spec.prestart} containers started ahead of calls, per worker`
}
