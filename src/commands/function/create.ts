import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {AmpCommand, settingFlag} from '../../base-command.js'
import type {CreateResult} from '../../runtime/client/client.js'
import {asyncFlags, asyncSettings, asyncSummary, envFlag, limitFlags, limits, prestartFlag, prestartSetting, prestartSummary, reuseFlags, reuseSettings, reuseSummary} from '../../function-flags.js'
import {DEFAULT_NETWORK, envFromFlags} from '../../runtime/shared/function-spec.js'
import {formatDuration} from '../../runtime/shared/validate.js'

export default class FunctionCreate extends AmpCommand<typeof FunctionCreate> {
  static override summary = 'Register a container image as a function'
  static override description =
    'Each call of the function runs a fresh container of IMAGE: the call input goes to its stdin, its stdout is the result and its stderr its log.'
  static override aliases = ['fn:create']
  static override examples = [
    {description: 'Register an image as the function "test"', command: '<%= config.bin %> function create test my/image:1'},
    {description: 'Allow each call two minutes', command: '<%= config.bin %> fn create test my/image:1 --timeout 2m'},
    {description: 'Point an existing function at a new image', command: '<%= config.bin %> function create test my/image:2 --replace'},
    {description: 'Give it 1 GiB of memory, half a CPU and two environment variables', command: '<%= config.bin %> fn create test my/image:1 --memory 1GiB --cpus 0.5 --env LEVEL=debug --env API_KEY'},
    {description: 'A function whose callers never wait; a failed call is tried 5 more times', command: '<%= config.bin %> fn create notify my/notify:1 --fire-and-forget --retries 5'},
    {description: 'A function that must not start before its input arrives (no pre-started containers)', command: '<%= config.bin %> fn create clock my/clock:1 --prestart 0'},
    {description: 'Warm containers: each serves many calls, one at a time, in a fresh process per call', command: '<%= config.bin %> fn create resize my/resize:1 --reuse'},
  ]

  static override args = {
    name: Args.string({description: 'function name: 1-63 lowercase letters, digits and -', required: true}),
    image: Args.string({description: 'container image, e.g. busybox:1.36 or ghcr.io/acme/fn:1', required: true}),
  }

  static override flags = {
    timeout: Flags.string({...settingFlag('timeout', 'how long one call may run before its container is killed, e.g. 500ms, 30s, 2m')}),
    network: Flags.string({
      description: 'Docker network of the containers: none, bridge or a named network',
      env: 'AMP_NETWORK',
      defaultHelp: async () => DEFAULT_NETWORK,
    }),
    replace: Flags.boolean({description: 'overwrite the function if it exists', env: 'AMP_REPLACE'}),
    ...limitFlags(),
    env: envFlag('an environment variable of its containers'),
    ...asyncFlags(),
    ...prestartFlag(),
    ...reuseFlags(),
  }

  async run(): Promise<CreateResult> {
    const {name, image} = this.args
    const result = await this.createClient().createFunction(
      name,
      {
        image,
        timeoutMs: this.settings.timeoutMs,
        network: this.flags.network ?? DEFAULT_NETWORK,
        ...limits(this.flags),
        ...asyncSettings(this.flags),
        ...prestartSetting(this.flags),
        ...reuseSettings(this.flags),
        ...(this.flags.env ? {env: envFromFlags(this.flags.env, process.env)} : {}),
      },
      {replace: this.flags.replace},
    )
    const spec = result.function
    this.log(
      `${result.replaced ? 'Replaced' : 'Created'} function ${spec.name} (image ${spec.image}, timeout ${formatDuration(spec.timeoutMs)}${
        spec.network === DEFAULT_NETWORK ? '' : `, network ${spec.network}`
      }${asyncSummary(spec)}${prestartSummary(spec)}${reuseSummary(spec)})`,
    )
    return result
  }
}
