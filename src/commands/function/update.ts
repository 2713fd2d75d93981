import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {AmpCommand} from '../../base-command.js'
import {asyncFlags, asyncSettings, asyncSummary, envFlag, limitFlags, limits, prestartFlag, prestartSetting, prestartSummary, reuseFlags, reuseSettings, reuseSummary} from '../../function-flags.js'
import {AmpError} from '../../runtime/shared/errors.js'
import {envPatch, type FunctionPatch, type FunctionSpec} from '../../runtime/shared/function-spec.js'
import {formatDuration, parseDuration} from '../../runtime/shared/validate.js'

export default class FunctionUpdate extends AmpCommand<typeof FunctionUpdate> {
  static override summary = "Change a function's image, timeout, network, limits, environment or async settings in place"
  static override description = `Changes only the settings given; the function keeps its name, its other settings and its creation time.
Calls already running finish with the settings they started with (the old image, timeout and network); every call that starts after the update uses the new ones.
--env sets or replaces one environment variable and --unset-env removes one; the others are kept.
With --json, prints the function as stored after the change: {name, image, timeoutMs, network, memoryBytes, cpus, pidsLimit, envKeys, fireAndForget, retries, prestart, reuse, reuseMaxCalls, createdAt, updatedAt}.`
  static override aliases = ['fn:update']
  static override examples = [
    {description: 'Roll "test" forward to a new image', command: '<%= config.bin %> function update test --image my/image:2'},
    {description: 'Give each call two minutes', command: '<%= config.bin %> fn update test --timeout 2m'},
    {description: 'Let its containers reach the network, and print the result as JSON', command: '<%= config.bin %> fn update test --network bridge --json'},
    {description: 'Raise its memory limit, set one variable and remove another', command: '<%= config.bin %> fn update test --memory 1GiB --env LEVEL=info --unset-env DEBUG'},
    {description: 'Make callers wait for its result again, and never retry a failed async call', command: '<%= config.bin %> fn update test --no-fire-and-forget --retries 0'},
    {description: 'Go back from warm containers to a fresh container per call', command: '<%= config.bin %> fn update test --no-reuse'},
  ]

  static override args = {
    name: Args.string({description: 'name of the function to change', required: true}),
  }

  // No env vars and no config-file defaults here: only what is typed may change a function.
  static override flags = {
    image: Flags.string({description: 'new container image, e.g. my/image:2'}),
    timeout: Flags.string({description: 'new time limit of one call, e.g. 500ms, 30s, 2m'}),
    network: Flags.string({description: 'new Docker network of the containers: none, bridge or a named network'}),
    ...limitFlags(false),
    env: envFlag('set an environment variable'),
    'unset-env': Flags.string({description: 'remove an environment variable, by NAME (repeatable)', multiple: true, multipleNonGreedy: true}),
    ...asyncFlags(true),
    ...prestartFlag(true),
    ...reuseFlags(true),
  }

  async run(): Promise<FunctionSpec> {
    const {image, timeout, network} = this.flags
    const patch: FunctionPatch = {
      image,
      network,
      timeoutMs: timeout === undefined ? undefined : parseDuration(timeout),
      ...limits(this.flags),
      ...asyncSettings(this.flags),
      ...prestartSetting(this.flags),
      ...reuseSettings(this.flags),
      env: envPatch(this.flags.env ?? [], this.flags['unset-env'] ?? [], process.env),
    }
    if (Object.values(patch).every((value) => value === undefined)) {
      throw new AmpError('bad_request', 'nothing to update: give --image, --timeout, --network, --memory, --cpus, --pids-limit, --env, --unset-env, --fire-and-forget, --retries, --prestart, --reuse or --reuse-max-calls', {
        suggestions: [`See the current settings with: amp function inspect ${this.args.name}`],
      })
    }
    const spec = await this.createClient().updateFunction(this.args.name, patch)
    this.log(
      `Updated function ${spec.name} (image ${spec.image}, timeout ${formatDuration(spec.timeoutMs)}, network ${spec.network}${asyncSummary(spec)}${prestartSummary(spec)}${reuseSummary(spec)}); calls already running finish with the previous settings`,
    )
    return spec
  }
}
