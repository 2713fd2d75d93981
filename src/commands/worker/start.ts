import * as Flags from '@oclif/core/flags'

import {AmpCommand, asyncFlags, natsCredentialFlags, settingFlag} from '../../base-command.js'
import {redactUrls} from '../../runtime/shared/credentials.js'
import {PULL_POLICIES} from '../../runtime/shared/config.js'
import {waitForShutdownSignal} from '../../runtime/ops/signals.js'
import {notifySystemd} from '../../runtime/ops/sd-notify.js'
import {startWorker} from '../../runtime/worker/worker.js'
import {workerOptionsFrom} from '../../runtime/worker/worker-options.js'

export default class WorkerStart extends AmpCommand<typeof WorkerStart> {
  static override summary = 'Run a worker until SIGINT or SIGTERM'
  static override description = `Takes calls from NATS and runs each in a fresh container (docker run -i --rm).
On SIGINT or SIGTERM it stops taking calls, finishes those in flight and exits 0. Run it under systemd on each machine with Docker.`
  static override examples = [
    {description: 'Run up to 4 containers at once, with local NATS', command: '<%= config.bin %> worker start'},
    {description: 'Use a NATS cluster and run 16 at once', command: '<%= config.bin %> worker start --nats nats://n1:4222,nats://n2:4222 --concurrency 16'},
    {description: 'Never pull images: use only those already on this machine', command: '<%= config.bin %> worker start --pull never'},
    {description: 'Start no container ahead of its call', command: '<%= config.bin %> worker start --prestart-max 0'},
    {description: "Run calls without amp's in-container runner (answers wait for docker's own exit; no container is reused)", command: '<%= config.bin %> worker start --no-runner'},
  ]

  static override flags = {
    nats: Flags.string(settingFlag('nats', 'NATS server URL(s), comma-separated')),
    concurrency: Flags.integer({...settingFlag('concurrency', 'containers run at once'), min: 1, max: 1024}),
    docker: Flags.string(settingFlag('docker', 'path or name of the docker CLI')),
    pull: Flags.string({
      ...settingFlag('pull', 'when to pull a function image: missing (if not on this machine), never or always'),
      options: [...PULL_POLICIES],
    }),
    'drain-timeout': Flags.string(
      settingFlag('drain-timeout', 'on SIGTERM, how long to wait for calls in flight before killing their containers, e.g. 30s'),
    ),
    'metrics-port': Flags.integer({
      ...settingFlag('metrics-port', 'serve /metrics, /health/live and /health/ready on this port (0 picks a free one)'),
      min: 0,
      max: 65_535,
    }),
    'prestart-max': Flags.integer({
      ...settingFlag('prestart-max', 'most containers started ahead of calls, across all functions (0: none, every call starts its own)'),
      min: 0,
      max: 1024,
    }),
    'prestart-idle': Flags.string(settingFlag('prestart-idle', "a function's pre-started containers are removed after this long without a call, e.g. 60s")),
    'metrics-host': Flags.string(settingFlag('metrics-host', 'address of the metrics port (0.0.0.0 for all interfaces)')),
    runner: Flags.boolean({
      ...settingFlag('runner', "run amp's in-container runner as each container's PID 1: answers as soon as the function exits, warm containers for --reuse functions (docs/runner.md); --no-runner turns it off"),
      allowNo: true,
    }),
    'runner-path': Flags.string(settingFlag('runner-path', 'the in-container runner binary (on the Docker host)')),
    'runtime-dir': Flags.string(settingFlag('runtime-dir', "where the containers' sockets go (on the Docker host; a short path)")),
    ...natsCredentialFlags,
    ...asyncFlags,
  }

  async run(): Promise<void> {
    const settings = this.settings
    const worker = await startWorker(workerOptionsFrom(settings, this.createLogger()))
    const nats = redactUrls(settings.nats)
    const metrics = worker.metricsUrl ? `, metrics ${worker.metricsUrl}/metrics` : ''
    // Listening before saying ready: a SIGTERM right after the ready line must drain, not kill.
    const stopSignal = waitForShutdownSignal()
    this.announceReady(
      {
        worker: {id: worker.id, metricsUrl: worker.metricsUrl ?? null},
        nats,
        concurrency: settings.concurrency,
        docker: settings.docker,
        pull: settings.pull,
      },
      `amp worker ${worker.id} taking calls from ${nats} (concurrency ${settings.concurrency}, pull ${settings.pull}${metrics})`,
    )
    await notifySystemd({ready: true, status: `taking calls from ${nats}`}, {logger: this.createLogger()})
    const signal = await stopSignal
    this.logToStderr(`amp: ${signal}: finishing the calls in flight (send it again to stop at once)`)
    await notifySystemd({stopping: true, status: 'finishing the calls in flight'})
    await worker.close()
  }
}
