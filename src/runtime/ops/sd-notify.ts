/**
 * Tells systemd (Type=notify) when a daemon is ready and when it starts stopping, with the
 * `systemd-notify` tool. Node cannot send unix datagrams itself, and no kept library does it
 * without native code. Without NOTIFY_SOCKET (not under systemd, or Type=simple) it does nothing.
 *
 * Sound with NotifyAccess=all: the message comes from the systemd-notify process, and without
 * --no-block it waits (BARRIER=1) until systemd has read the message, so systemd can still tell
 * which unit the sender belongs to.
 */
import {execa} from 'execa'

import type {Logger} from '../shared/logger.js'

export interface NotifyOptions {
  env?: NodeJS.ProcessEnv
  exec?: typeof execa
  /** The tool; systemd-notify from PATH by default. */
  tool?: string
  logger?: Logger
}

export type NotifyState = {ready: true; status: string} | {stopping: true; status: string}

/** Sends READY=1 or STOPPING=1 with a STATUS= line. Resolves false when not under systemd; never throws. */
export async function notifySystemd(state: NotifyState, options: NotifyOptions = {}): Promise<boolean> {
  const env = options.env ?? process.env
  if (!env.NOTIFY_SOCKET) return false
  const exec = options.exec ?? execa
  const status = state.status.replace(/[\r\n]+/g, ' ').slice(0, 200)
  const args = 'ready' in state ? ['--ready', `--status=${status}`] : ['STOPPING=1', `--status=${status}`]
  const result = await exec(options.tool ?? 'systemd-notify', args, {
    env: {NOTIFY_SOCKET: env.NOTIFY_SOCKET},
    extendEnv: true,
    reject: false,
    stdin: 'ignore',
    timeout: 10_000,
    cleanup: false,
  })
  if (result.failed) {
    const why = String(result.stderr ?? '').trim() || result.shortMessage
    options.logger?.warn('could not notify systemd (is systemd-notify installed, and NotifyAccess=all set?)', {error: why})
    return false
  }
  return true
}
