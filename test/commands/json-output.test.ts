/**
 * Pins the --json output of every command to docs/json.md: each documented example is read from the
 * page and compared with what the command prints (same field names and types everywhere; the same
 * values where the fake listener makes them fixed). A command with --json that the page does not
 * document, or a documented one this test does not run, fails too.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import {AmpError, type ErrorCode, HTTP_STATUS} from '../../src/runtime/shared/errors.js'
import type {CallRecord, DeadLetter} from '../../src/runtime/shared/http-contract.js'
import {type FakeListener, startFakeListener} from '../helpers/fake-listener.js'
import {isolateEnvironment, loadConfig, runAmp} from '../helpers/run-amp.js'

const DOC = readFileSync(new URL('../../docs/json.md', import.meta.url), 'utf8')

/** The first ```json block under each "## `amp ...`" (or "## Name") heading of docs/json.md, by heading. */
function documentedExamples(): Map<string, string> {
  const examples = new Map<string, string>()
  for (const section of DOC.split(/^## /m).slice(1)) {
    const heading = section.slice(0, section.indexOf('\n')).trim()
    const block = /```json\n([\s\S]*?)\n```/.exec(section)
    if (block) examples.set(heading, block[1])
  }
  return examples
}

const EXAMPLES = documentedExamples()

function example(heading: string): unknown {
  const text = EXAMPLES.get(heading)
  if (text === undefined) throw new Error(`docs/json.md has no json example under "## ${heading}"`)
  return JSON.parse(text)
}

/** Field names and value types, recursively; an array's shape is that of its first element. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])]
  if (value === null) return 'null'
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, shape(item)]))
  }
  return typeof value === 'number' && Number.isInteger(value) ? 'integer' : typeof value
}

describe('--json output is what docs/json.md says', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  const json = async (args: string[], exit = 0) => {
    const run = await runAmp([...args, '--json', '--server', fake.url])
    expect(run.exitCode, `${args.join(' ')}: ${run.stdout}`).to.equal(exit)
    expect(run.stderr, args.join(' ')).to.equal('')
    return JSON.parse(run.stdout)
  }

  // Each documented heading, and how to get the real output for it.
  const cases: Record<string, () => Promise<void>> = {
    FunctionSpec: async () => {
      fake.add('test', 'my/image:1')
      expect(await json(['fn', 'inspect', 'test'])).to.deep.equal(example('FunctionSpec'))
    },
    '`amp function create NAME IMAGE --json`': async () => {
      const printed = await json(['function', 'create', 'test', 'my/image:1'])
      expect(shape(printed)).to.deep.equal(shape(example('`amp function create NAME IMAGE --json`')))
      expect(printed).to.deep.include({replaced: false})
      expect(printed.function).to.include({name: 'test', image: 'my/image:1', timeoutMs: 30_000, network: 'none'})
    },
    '`amp function ls --json`': async () => {
      fake.add('test', 'my/image:1')
      expect(await json(['function', 'ls'])).to.deep.equal(example('`amp function ls --json`'))
    },
    '`amp function inspect NAME --json`': async () => {
      fake.add('test', 'my/image:1')
      expect(await json(['function', 'inspect', 'test'])).to.deep.equal(example('`amp function inspect NAME --json`'))
    },
    '`amp function update NAME --image IMAGE --json`': async () => {
      fake.add('test', 'my/image:1')
      const printed = await json(['function', 'update', 'test', '--image', 'my/image:2'])
      expect(printed).to.deep.equal(example('`amp function update NAME --image IMAGE --json`'))
    },
    '`amp function rm NAME... --json`': async () => {
      fake.add('test', 'my/image:1')
      expect(await json(['function', 'rm', 'test', 'nope'], 102)).to.deep.equal(example('`amp function rm NAME... --json`'))
    },
    '`amp function invoke NAME --json`': async () => {
      fake.add('test')
      fake.onInvoke = () => ({exitCode: 0, stdout: 'Hello Amp Functions\n', stderr: 'input hello amp functions\n'})
      const printed = await json(['function', 'invoke', 'test'])
      const documented = example('`amp function invoke NAME --json`') as Record<string, unknown>
      expect(shape(printed)).to.deep.equal(shape(documented))
      // The documented outputs are those of this call.
      expect(printed.stdout).to.equal(documented.stdout)
      expect(printed.stderr).to.equal(documented.stderr)
    },
    '`amp function invoke NAME --async --json`': async () => {
      fake.add('test')
      const printed = await json(['function', 'invoke', 'test', '--async'])
      expect(shape(printed)).to.deep.equal(shape(example('`amp function invoke NAME --async --json`')))
      expect(printed).to.include({function: 'test', state: 'queued', statusUrl: `/_amp/v1/calls/${printed.callId}`})
    },
    '`amp call get CALL_ID --json`': async () => {
      const documented = example('`amp call get CALL_ID --json`') as CallRecord
      fake.calls.set(documented.callId, documented)
      expect(await json(['call', 'get', documented.callId])).to.deep.equal(documented)
    },
    '`amp call dead-letters --json`': async () => {
      const documented = example('`amp call dead-letters --json`') as {deadLetters: DeadLetter[]}
      fake.deadLetters.push(...documented.deadLetters)
      expect(await json(['call', 'dead-letters'])).to.deep.equal(documented)
    },
    '`amp function logs NAME --json`': async () => {
      // What the CLI prints is each line the listener sends, one compact object per line, exactly as documented.
      const documented = EXAMPLES.get('`amp function logs NAME --json`')!
      const listener = createServer((_req, res) => {
        res.writeHead(200, {'content-type': 'application/x-ndjson'})
        res.end(`${documented}\n${documented}\n`)
      })
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
      try {
        const url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`
        const run = await runAmp(['fn', 'logs', 'test', '--json', '--server', url])
        expect(run.exitCode).to.equal(0)
        expect(run.stdout).to.equal(`${documented}\n${documented}\n`)
        expect(Object.keys(JSON.parse(documented))).to.deep.equal(['time', 'function', 'callId', 'worker', 'line'])
      } finally {
        listener.closeAllConnections()
        await new Promise((resolve) => listener.close(resolve))
      }
    },
    Errors: async () => {
      expect(await json(['function', 'inspect', 'nope'], 102)).to.deep.equal(example('Errors'))
      // An error without suggestions leaves the field out, as documented.
      const usage = await json(['function', 'update', 'test', '--image=--privileged'], 2)
      expect(Object.keys(usage.error)).to.deep.equal(['code', 'message', 'exit'])
      expect(usage.error).to.include({code: 'bad_request', exit: 2})
    },
  }

  for (const [heading, check] of Object.entries(cases)) {
    it(`${heading.replaceAll('`', '')}`, check)
  }

  it('documents every example this test checks, and checks every example it documents', () => {
    expect([...EXAMPLES.keys()].sort()).to.deep.equal(Object.keys(cases).sort())
  })

  it('documents the --json output of every command that has --json, and names those without it', async () => {
    const config = await loadConfig()
    const commands = config.commands.filter(
      (command) => command.pluginName === config.pjson.name && !command.hidden && !command.aliases.includes(command.id),
    )
    for (const command of commands) {
      const words = command.id.replaceAll(':', ' ')
      if (command.enableJsonFlag) {
        expect(DOC, command.id).to.match(new RegExp(`^## \`amp ${words} .*--json\``, 'm'))
      } else {
        expect(DOC.slice(DOC.indexOf('## Commands without `--json`')), command.id).to.contain(`\`amp ${words}\``)
      }
    }
  })

  it('lists every error code amp has, with its exit code', () => {
    const table = DOC.slice(DOC.indexOf('| `code` | `exit` |'))
    // HTTP_STATUS has an entry for every ErrorCode.
    for (const code of Object.keys(HTTP_STATUS) as ErrorCode[]) {
      const exit = new AmpError(code, 'x').exit
      expect(table, code).to.match(new RegExp(`\\| [^\\n]*\`${code}\`[^\\n]* \\| ${exit} \\|`))
    }
  })
})
