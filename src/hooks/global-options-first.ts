/**
 * `amp --server URL function ls`: global options before the command words, as the original amp CLI
 * took them. oclif takes the first word for the command id and finds no command `--server`; this
 * command_not_found hook (package.json oclif.hooks) moves the leading global options, with their
 * values, to after the command words and runs that command, so flag > env > file > default holds
 * as usual. Any other word not found stays oclif's own "command X not found".
 */
import {CLIError} from '@oclif/core/errors'
import {normalizeArgv} from '@oclif/core/help'
import type {Config, Hook} from '@oclif/core/interfaces'

const hook: Hook.CommandNotFound = async function ({argv = [], config, id}) {
  if (!id.startsWith('-')) throw new CLIError(`command ${id} not found`)
  const {leading, rest} = splitLeadingOptions([id, ...argv], globalOptions(config))
  if (rest.length === 0) throw new CLIError('give a command after the global options, e.g. amp --server URL function ls (amp --help lists the commands)')
  const [commandId, ...commandArgv] = normalizeArgv(config, rest)
  // `amp -v fn` as `amp fn`: a topic's help.
  if (!config.findCommand(commandId) && config.findTopic(commandId)) return config.runCommand('help', [commandId])
  return config.runCommand(commandId, [...leading, ...commandArgv])
}

export default hook

/** The global options of amp's commands (the base command's and --json), by name and char: whether each takes a value. */
function globalOptions(config: Config): Map<string, boolean> {
  const options = new Map<string, boolean>()
  for (const command of config.commands) {
    if (command.pluginName !== config.name) continue
    for (const flag of Object.values(command.flags)) {
      if (flag.helpGroup !== 'GLOBAL') continue
      options.set(`--${flag.name}`, flag.type === 'option')
      if (flag.char) options.set(`-${flag.char}`, flag.type === 'option')
    }
  }
  return options
}

/** The options before the first word that is not one (with the values of those that take one), and the words from there. */
function splitLeadingOptions(words: string[], options: Map<string, boolean>): {leading: string[]; rest: string[]} {
  let next = 0
  while (next < words.length && words[next].startsWith('-')) {
    const word = words[next]
    const takesValue = options.get(optionName(word))
    if (takesValue === undefined) {
      const known = [...options.keys()].sort().join(', ')
      throw new CLIError(`unknown option ${optionName(word)} before the command: amp takes ${known} there, other options after the command`)
    }
    if (takesValue && !word.includes('=')) {
      if (next + 1 >= words.length) throw new CLIError(`Flag ${optionName(word)} expects a value`)
      next += 2
    } else {
      next += 1
    }
  }
  return {leading: words.slice(0, next), rest: words.slice(next)}
}

/** `--server` of `--server=URL`: never the value, which may be a token. */
function optionName(word: string): string {
  return word.startsWith('--') ? word.split('=')[0] : word
}
