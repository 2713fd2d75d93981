import {expect} from 'chai'

import {formatBytes} from '../../../src/runtime/shared/bytes.js'

describe('formatBytes', () => {
  it('names limits the way users set them', () => {
    expect(formatBytes(8 * 1024 * 1024)).to.equal('8 MiB')
    expect(formatBytes(64 * 1024)).to.equal('64 KiB')
    expect(formatBytes(1000)).to.equal('1000 bytes')
  })

  it('writes a setting as the flags and the config file take it', () => {
    expect(formatBytes(8 * 1024 * 1024, 'setting')).to.equal('8MiB')
    expect(formatBytes(512 * 1024, 'setting')).to.equal('512KiB')
    expect(formatBytes(1000, 'setting')).to.equal('1000B')
  })
})
