import * as Flags from '@oclif/core/flags'
import {Listr} from 'listr2'

import {AmpCommand, etcdCredentialFlags, invokeTokenFlag, natsCredentialFlags, settingFlag} from '../base-command.js'
import {redactUrls} from '../runtime/shared/credentials.js'
import {MAX_IN_FLIGHT_LIMIT, PULL_POLICIES} from '../runtime/shared/config.js'
import {waitForShutdownSignal} from '../runtime/ops/signals.js'
import {type Stack, startStack} from '../runtime/ops/stack.js'
import {stackOptionsFrom} from '../runtime/ops/stack-options.js'
import {writeToStderr} from '../runtime/shared/logger.js'

export default class Up extends AmpCommand<typeof Up> {
  static override summary = 'Run the whole stack on this machine until Ctrl-C'
  static override description = `Starts nats-server and etcd from PATH unless they are already reachable (etcd keeps its data under <%= config.dataDir %>), plus a listener and a worker in this process.
Ctrl-C (or SIGTERM) stops all of it cleanly.`
  static override examples = [
    {description: 'Start everything with the defaults (listener on http://127.0.0.1:4242)', command: '<%= config.bin %> up'},
    {description: 'Use a NATS server that already runs elsewhere, and another port', command: '<%= config.bin %> up --nats nats://10.0.0.5:4222 --port 8080'},
  ]

  static override flags = {
    host: Flags.string(settingFlag('host', 'address the listener listens on')),
    port: Flags.integer({...settingFlag('port', 'port the listener listens on (0 picks a free one)'), min: 0, max: 65_535}),
    nats: Flags.string(settingFlag('nats', 'NATS URL(s); nats-server is started there if nothing answers')),
    etcd: Flags.string({...settingFlag('etcd', 'etcd URL(s); etcd is started there if nothing answers'), multiple: true}),
    concurrency: Flags.integer({...settingFlag('concurrency', 'containers the worker runs at once'), min: 1, max: 1024}),
    'max-inflight': Flags.integer({...settingFlag('max-inflight', 'calls the listener serves at once (429 past it)'), min: 1, max: MAX_IN_FLIGHT_LIMIT}),
    docker: Flags.string(settingFlag('docker', 'path or name of the docker CLI')),
    pull: Flags.string({...settingFlag('pull', 'when the worker pulls a function image'), options: [...PULL_POLICIES]}),
    ...invokeTokenFlag,
    ...natsCredentialFlags,
    ...etcdCredentialFlags,
  }

  async run(): Promise<void> {
    const settings = this.settings
    // Log lines go under the spinner while starting on a terminal, to stderr once everything runs.
    let write = writeToStderr
    const logger = this.createLogger({write: (line) => write(line)})
    const start = () => startStack(stackOptionsFrom(settings, {dataDir: this.config.dataDir, logger, isSet: (key) => this.isSet(key)}))

    let stack: Stack
    // Progress only on a terminal that has a width: listr2 would draw one letter per line on a width of 0.
    if (process.stdout.isTTY && process.stdout.columns > 0 && !this.jsonEnabled()) {
      const tasks = new Listr<{stack?: Stack}>(
        [
          {
            title: 'Starting NATS, etcd, a worker and a listener',
            task: async (ctx, task) => {
              write = (line) => {
                task.output = line.trim()
              }
              ctx.stack = await start()
              task.title = 'amp is up'
            },
          },
        ],
        {registerSignalListeners: false},
      )
      try {
        stack = (await tasks.run()).stack as Stack
      } finally {
        write = writeToStderr
      }
    } else {
      stack = await start()
    }

    const origin = (started: boolean, log?: string) => (started ? `started by amp${log ? `, log ${log}` : ''}` : 'already running')
    const server = (url: string, started: boolean, log?: string) => ({url: redactUrls(url), started, log: log ?? null})
    // Listening before saying ready: a SIGTERM right after the ready line must drain, not kill.
    const stopSignal = waitForShutdownSignal()
    this.announceReady(
      {
        listener: {url: stack.listenerUrl},
        nats: server(stack.natsUrl, stack.startedNats, stack.natsLog),
        etcd: server(stack.etcdUrl, stack.startedEtcd, stack.etcdLog),
        worker: {concurrency: settings.concurrency, docker: settings.docker, pull: settings.pull},
      },
      `amp is up:
  listener  ${stack.listenerUrl}
  NATS      ${redactUrls(stack.natsUrl)} (${origin(stack.startedNats, stack.natsLog)})
  etcd      ${redactUrls(stack.etcdUrl)} (${origin(stack.startedEtcd, stack.etcdLog)})
  worker    in this process, ${settings.concurrency} containers at once (docker: ${settings.docker}, pull: ${settings.pull})
Try: amp function create hello IMAGE && echo hi | amp function invoke hello
Press Ctrl-C to stop.`,
    )
    const signal = await stopSignal
    this.logToStderr(`amp: ${signal}: stopping the listener, the worker${stack.startedNats || stack.startedEtcd ? ' and the servers amp started' : ''} (send it again to stop at once)`)
    await stack.close()
  }
}
