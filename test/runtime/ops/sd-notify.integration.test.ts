import {expect} from 'chai'

import {notifySystemd} from '../../../src/runtime/ops/sd-notify.js'
import {startNotifySocket, type NotifySocket} from '../../helpers/notify-socket.js'

// Needs systemd-notify (package systemd) and python3 (for the fake socket), as on any Debian host.
describe('sd-notify with the real systemd-notify and a fake notification socket', () => {
  let socket: NotifySocket

  beforeEach(async () => {
    socket = await startNotifySocket()
  })
  afterEach(() => socket.close())

  it('sends READY=1 with a status line, and waits until the manager has read it (BARRIER)', async () => {
    const sent = await notifySystemd({ready: true, status: 'listening on\nhttp://127.0.0.1:4242'}, {env: {NOTIFY_SOCKET: socket.path}})
    expect(sent).to.equal(true)
    // Resolved only after the barrier: the message is already there.
    expect(socket.messages[0].split('\n').sort()).to.deep.equal(['READY=1', 'STATUS=listening on http://127.0.0.1:4242'])
    expect(socket.messages).to.include('BARRIER=1')
  })

  it('sends STOPPING=1 with a status line', async () => {
    expect(await notifySystemd({stopping: true, status: 'finishing the calls in flight'}, {env: {NOTIFY_SOCKET: socket.path}})).to.equal(true)
    expect(socket.messages[0].split('\n').sort()).to.deep.equal(['STATUS=finishing the calls in flight', 'STOPPING=1'])
  })
})
