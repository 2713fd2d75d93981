import {expect} from 'chai'
import type {execa} from 'execa'

import {createLogger} from '../../../src/runtime/shared/logger.js'
import {notifySystemd} from '../../../src/runtime/ops/sd-notify.js'

describe('sd-notify', () => {
  it('does nothing without NOTIFY_SOCKET (not under systemd, or Type=simple)', async () => {
    let ran = false
    const exec = (() => {
      ran = true
    }) as unknown as typeof execa
    expect(await notifySystemd({ready: true, status: 'x'}, {env: {}, exec})).to.equal(false)
    expect(ran).to.equal(false)
  })

  it('warns and carries on when the tool cannot run', async () => {
    const lines: string[] = []
    const logger = createLogger({write: (line) => lines.push(line)})
    const sent = await notifySystemd({ready: true, status: 'x'}, {env: {NOTIFY_SOCKET: '/nonexistent/sock'}, tool: 'amp-no-such-tool', logger})
    expect(sent).to.equal(false)
    expect(lines).to.have.length(1)
    expect(lines[0]).to.match(/level=warn msg="could not notify systemd/)
  })
})
