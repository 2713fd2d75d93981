import * as Flags from '@oclif/core/flags'

import {AmpCommand, asyncFlags, etcdCredentialFlags, invokeTokenFlag, natsCredentialFlags, settingFlag} from '../../base-command.js'
import {redactUrls} from '../../runtime/shared/credentials.js'
import {formatBytes} from '../../runtime/shared/bytes.js'
import {MAX_IN_FLIGHT_LIMIT} from '../../runtime/shared/config.js'
import {startListener} from '../../runtime/listener/listener.js'
import {listenerOptionsFrom} from '../../runtime/listener/listener-options.js'
import {notifySystemd} from '../../runtime/ops/sd-notify.js'
import {waitForShutdownSignal} from '../../runtime/ops/signals.js'

export default class ListenerStart extends AmpCommand<typeof ListenerStart> {
  static override summary = 'Run the HTTP listener until SIGINT or SIGTERM'
  static override description = `Serves POST /<function> (one call, answered when it is done) and the function API under /_amp/v1/, keeps functions in etcd and sends calls to the workers over NATS.
On SIGINT or SIGTERM it stops taking calls, finishes those in flight and exits 0.`
  static override examples = [
    {description: 'Listen on 127.0.0.1:4242 with local NATS and etcd', command: '<%= config.bin %> listener start'},
    {
      description: 'Serve other machines, with a NATS and an etcd cluster',
      command: '<%= config.bin %> listener start --host 0.0.0.0 --nats nats://n1:4222,nats://n2:4222 --etcd http://e1:2379,http://e2:2379',
    },
  ]

  static override flags = {
    host: Flags.string(settingFlag('host', 'address to listen on (0.0.0.0 for all interfaces: set --token first)')),
    port: Flags.integer({...settingFlag('port', 'TCP port to listen on (0 picks a free one)'), min: 0, max: 65_535}),
    nats: Flags.string(settingFlag('nats', 'NATS server URL(s), comma-separated')),
    etcd: Flags.string({...settingFlag('etcd', 'etcd URL(s), comma-separated or the flag repeated'), multiple: true}),
    'max-body': Flags.string(settingFlag('max-body', 'largest call input accepted (bigger ones get 413), e.g. 8MiB')),
    'drain-timeout': Flags.string(settingFlag('drain-timeout', 'on SIGTERM, how long to wait for calls in flight, e.g. 30s')),
    ...invokeTokenFlag,
    ...natsCredentialFlags,
    ...etcdCredentialFlags,
    'max-inflight': Flags.integer({
      ...settingFlag('max-inflight', 'calls served at once; past it a call gets 429 with Retry-After at once'),
      min: 1,
      max: MAX_IN_FLIGHT_LIMIT,
    }),
    'async-lease': asyncFlags['async-lease'],
    'async-retention': asyncFlags['async-retention'],
    'js-replicas': asyncFlags['js-replicas'],
  }

  async run(): Promise<void> {
    const settings = this.settings
    const listener = await startListener(listenerOptionsFrom(settings, this.createLogger()))
    const nats = redactUrls(settings.nats)
    const etcd = settings.etcd.map((url) => redactUrls(url))
    // Listening before saying ready: a SIGTERM right after the ready line must drain, not kill.
    const stopSignal = waitForShutdownSignal()
    this.announceReady(
      {listener: {id: listener.id, url: listener.url}, nats, etcd, maxBodyBytes: settings.maxBodyBytes},
      `amp listener ${listener.id} listening on ${listener.url} (NATS ${nats}, etcd ${etcd.join(',')}, max body ${formatBytes(settings.maxBodyBytes, 'setting')})`,
    )
    await notifySystemd({ready: true, status: `listening on ${listener.url}`}, {logger: this.createLogger()})
    const signal = await stopSignal
    this.logToStderr(`amp: ${signal}: finishing the calls in flight (send it again to stop at once)`)
    await notifySystemd({stopping: true, status: 'finishing the calls in flight'})
    await listener.close()
  }
}
