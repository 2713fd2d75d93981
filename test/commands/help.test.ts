import {expect} from 'chai'

import {isolateEnvironment, loadConfig, runAmp} from '../helpers/run-amp.js'

/** Every amp command (not the plugins' help and autocomplete) and its aliases, as oclif loads them. */
async function ampCommands() {
  const config = await loadConfig()
  return config.commands.filter((command) => command.pluginName === config.pjson.name && !command.hidden)
}

describe('amp help', () => {
  isolateEnvironment()

  it('lists the commands every user needs', async () => {
    const ids = (await ampCommands()).map((command) => command.id).sort()
    for (const id of ['function:create', 'function:inspect', 'function:invoke', 'function:ls', 'function:rm', 'function:update', 'listener:start', 'up', 'worker:start']) {
      expect(ids).to.include(id)
    }
  })

  it('has a summary and at least one example on every command, each a runnable amp command line', async () => {
    for (const command of await ampCommands()) {
      expect(command.summary, command.id).to.be.a('string').and.not.equal('')
      expect(command.examples, command.id).to.be.an('array').with.length.greaterThan(0)
      for (const example of command.examples ?? []) {
        const line = typeof example === 'string' ? example : example.command
        expect(line, command.id).to.match(/^<%= config\.bin %> /)
        if (typeof example !== 'string') expect(example.description, command.id).to.not.equal('')
      }
    }
  })

  it('shows the examples in `amp help <command>` and `amp <command> --help`', async () => {
    for (const command of await ampCommands()) {
      const words = command.id.split(':')
      for (const args of [['help', ...words], [...words, '--help']]) {
        const {stdout} = await runAmp(args)
        expect(stdout, args.join(' ')).to.contain('EXAMPLES')
        expect(stdout, args.join(' ')).to.match(/\$ amp \S/)
      }
    }
  })
})
