import {expect} from 'chai'
import {minimatch} from 'minimatch'
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)
const literal = require('../../scripts/minimatch-literal.cjs') as {minimatch: typeof minimatch}

const NAMES = ['@oclif/plugin-help', '@oclif/plugin-helpers', '@oclif/plugin-autocomplete', '@oclif/core', 'undici', 'yaml', 'plugin-help', '@nats-io/jetstream', 'a.b', 'a-b_c']
const PATTERNS = [
  // What amp's package.json lists, and other plain names: string equality.
  '@oclif/plugin-help',
  '@oclif/plugin-autocomplete',
  'undici',
  'a.b',
  // Globs, extglobs, braces, negation, escapes: minimatch itself.
  '@oclif/plugin-*',
  '@oclif/*',
  '*',
  '!undici',
  '@(undici|yaml)',
  '@oclif/plugin-{help,autocomplete}',
  'a?b',
  '[ay]*',
  '\\undici',
]

describe("the bundle's minimatch for oclif's plugin loader (scripts/minimatch-literal.cjs)", () => {
  it('answers as minimatch does for every name and pattern', () => {
    for (const name of NAMES)
      for (const pattern of PATTERNS) expect(literal.minimatch(name, pattern), `${name} ~ ${pattern}`).to.equal(minimatch(name, pattern))
  })

  it('answers as minimatch does when given options', () => {
    expect(literal.minimatch('UNDICI', 'undici', {nocase: true})).to.equal(true)
    expect(literal.minimatch('UNDICI', 'undici')).to.equal(false)
  })
})
