import {expect} from 'chai'
import {execa} from 'execa'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ampPiped, cleanEnv} from '../helpers/run-amp-process.js'

/**
 * Shell completion comes from @oclif/plugin-autocomplete: `amp autocomplete bash` builds the
 * completion function under amp's cache dir. This sources the function it built in bash and asks
 * it for completions, as bash does on TAB.
 */
describe('amp autocomplete', function () {
  this.timeout(60_000)
  let home: string
  let completions: string
  before(async () => {
    home = mkdtempSync(path.join(tmpdir(), 'amp-complete-'))
    const setup = await ampPiped(['autocomplete', 'bash'], cleanEnv(home))
    expect(setup.exitCode, setup.stderr).to.equal(0)
    expect(setup.stdout).to.contain('amp autocomplete script bash')
    completions = path.join(home, '.cache', 'amp', 'autocomplete', 'functions', 'bash', 'amp.bash')
  })
  after(() => rmSync(home, {recursive: true, force: true}))

  /** What bash offers for TAB after `words` (the last one being the word under the cursor). */
  async function complete(...words: string[]): Promise<string[]> {
    const script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _amp_autocomplete; printf "%s\\n" "${COMPREPLY[@]}"'
    const {stdout} = await execa('bash', ['-c', script, 'complete', completions, 'amp', ...words])
    // bash shows each candidate once; the generated function may offer one several times.
    return [...new Set(stdout.split('\n').filter(Boolean))].sort()
  }

  it('writes a bash completion function and prints the line that installs it', async () => {
    expect(existsSync(completions)).to.equal(true)
    const {stdout, exitCode} = await ampPiped(['autocomplete', 'script', 'bash'], cleanEnv(home))
    expect(exitCode).to.equal(0)
    expect(stdout).to.contain('AMP_AC_BASH_SETUP_PATH=')
  })

  it('completes topics and commands', async () => {
    expect(await complete('fun')).to.deep.equal(['function'])
    expect(await complete('function', '')).to.include.members(['create', 'inspect', 'invoke', 'ls', 'rm', 'update'])
    expect(await complete('function', 'in')).to.deep.equal(['inspect', 'invoke'])
    expect(await complete('fn', 'up')).to.deep.equal(['update'])
    expect(await complete('listener', '')).to.deep.equal(['start'])
  })

  // The plugin completes flags typed right after the command words (`amp function update --<TAB>`), not after arguments.
  it('completes flags of a command', async () => {
    expect(await complete('function', 'update', '--')).to.include.members(['--image', '--timeout', '--network', '--json', '--server'])
    expect(await complete('function', 'ls', '--q')).to.deep.equal(['--quiet'])
  })

  it('also builds zsh completion', async () => {
    const {exitCode, stdout} = await ampPiped(['autocomplete', 'zsh'], cleanEnv(home))
    expect(exitCode).to.equal(0)
    expect(stdout).to.contain('amp autocomplete script zsh')
    expect(existsSync(path.join(home, '.cache', 'amp', 'autocomplete', 'functions', 'zsh', '_amp'))).to.equal(true)
  })
})
