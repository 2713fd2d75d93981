/**
 * The unit files in examples/systemd pass `systemd-analyze verify` (needs systemd installed, not
 * running) and keep the settings the README promises. verify needs ExecStart's program to exist, so
 * the copies checked here run this repository's bin/run.js instead of an installed `amp`.
 */
import {expect} from 'chai'
import {execa} from 'execa'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {CONFIG_KEYS} from '../../src/runtime/shared/config.js'
import {DEFAULT_LISTENER_DRAIN_MS} from '../../src/runtime/listener/listener.js'
import {DEFAULT_DRAIN_TIMEOUT_MS} from '../../src/runtime/worker/worker.js'

const DIR = fileURLToPath(new URL('../../examples/systemd/', import.meta.url))
const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const UNITS = {'amp-listener.service': DEFAULT_LISTENER_DRAIN_MS, 'amp-worker.service': DEFAULT_DRAIN_TIMEOUT_MS}

/** The [Service] settings of a unit, last one wins (as systemd reads them, for single-valued keys). */
function serviceSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>()
  let section = ''
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line.trim())
    if (header) section = header[1]
    const setting = /^(\w+)=(.*)$/.exec(line)
    if (setting && section === 'Service') settings.set(setting[1], setting[2])
  }
  return settings
}

describe('examples/systemd unit files', () => {
  it('pass systemd-analyze verify with no message at all', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'amp-units-'))
    try {
      const files = Object.keys(UNITS).map((name) => {
        const text = readFileSync(path.join(DIR, name), 'utf8')
        expect(text).to.match(/^ExecStart=amp (listener|worker) start$/m)
        writeFileSync(path.join(dir, name), text.replace(/^ExecStart=amp /m, `ExecStart=${RUN} `))
        return path.join(dir, name)
      })
      const result = await execa('systemd-analyze', ['verify', ...files], {reject: false, all: true})
      // verify exits 0 on unknown keys too, and only says so: any output is a finding.
      expect(result.all, 'systemd-analyze verify output').to.equal('')
      expect(result.exitCode).to.equal(0)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  for (const [name, drainMs] of Object.entries(UNITS)) {
    it(`${name}: Type=notify, SIGTERM to amp only, and a stop timeout above amp's drain deadline`, () => {
      const settings = serviceSettings(readFileSync(path.join(DIR, name), 'utf8'))
      expect(settings.get('Type')).to.equal('notify')
      expect(settings.get('NotifyAccess')).to.equal('all')
      expect(settings.get('KillSignal')).to.equal('SIGTERM')
      expect(settings.get('KillMode')).to.equal('mixed')
      expect(settings.get('Restart')).to.equal('on-failure')
      expect(settings.get('EnvironmentFile')).to.equal('-/etc/amp/amp.env')
      const stopSeconds = Number(/^(\d+)s$/.exec(settings.get('TimeoutStopSec') ?? '')?.[1])
      expect(stopSeconds * 1000).to.be.at.least(drainMs + 10_000)
      expect(settings.get('NoNewPrivileges')).to.equal('yes')
      expect(settings.get('ProtectSystem')).to.equal('strict')
    })
  }

  it('amp-worker.service can reach Docker', () => {
    const settings = serviceSettings(readFileSync(path.join(DIR, 'amp-worker.service'), 'utf8'))
    expect(settings.get('SupplementaryGroups')).to.equal('docker')
    expect(settings.get('RestrictAddressFamilies')).to.contain('AF_UNIX')
    expect(settings.get('PrivateUsers'), 'docker group membership must stay real').to.equal(undefined)
  })

  it('amp.env sets only settings amp knows, as AMP_<KEY>', () => {
    const known = new Set(CONFIG_KEYS.map((key) => `AMP_${key.toUpperCase().replaceAll('-', '_')}`))
    const names = readFileSync(path.join(DIR, 'amp.env'), 'utf8')
      .split('\n')
      .filter((line) => line.trim() && !line.startsWith('#'))
      .map((line) => line.split('=')[0])
    expect(names.length).to.be.above(5)
    expect(names.filter((name) => !known.has(name))).to.deep.equal([])
  })
})
