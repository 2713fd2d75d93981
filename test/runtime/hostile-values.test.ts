import {expect} from 'chai'
import fc from 'fast-check'

import {dockerRunArgs, type RunSpec} from '../../src/runtime/worker/container-runner.js'
import {checkFunctionInput} from '../../src/runtime/shared/function-spec.js'
import {HOSTILE, HOSTILE_NETWORKS} from '../helpers/hostile.js'

const base: RunSpec = {callId: 'c0ffee-1234', function: 'fn', image: 'busybox:1.36', network: 'none', timeoutMs: 1000, memoryBytes: 256 * 1024 * 1024, cpus: 1, pidsLimit: 256, env: {}, input: new Uint8Array(0)}
// Argument slots that hold a value rather than a flag name.
const VALUE_AFTER = new Set(['--name', '--label', '--network', '--log-driver', '--pull', '--security-opt', '--cap-drop', '--pids-limit', '--memory', '--memory-swap', '--cpus', '--env-file'])

/** The docker run arguments, or undefined if building them was refused. */
function argsOrRefused(spec: RunSpec): string[] | undefined {
  try {
    return dockerRunArgs(spec, 'worker-1', 'missing')
  } catch {
    return undefined
  }
}

describe('hostile names, images and networks', () => {
  for (const [field, values] of [['function', HOSTILE], ['image', HOSTILE], ['network', HOSTILE_NETWORKS], ['callId', HOSTILE]] as const) {
    it(`never build docker arguments with a hostile ${field}`, () => {
      for (const value of values) expect(argsOrRefused({...base, [field]: value}), JSON.stringify(value)).to.equal(undefined)
    })
  }

  it('refuse every hostile name, image and network at create', () => {
    for (const value of HOSTILE) {
      expect(() => checkFunctionInput(value, {image: 'busybox:1.36'}), `name ${JSON.stringify(value)}`).to.throw()
      expect(() => checkFunctionInput('ok', {image: value}), `image ${JSON.stringify(value)}`).to.throw()
    }
    for (const value of HOSTILE_NETWORKS) {
      expect(() => checkFunctionInput('ok', {image: 'busybox:1.36', network: value}), `network ${JSON.stringify(value)}`).to.throw()
    }
  })

  it('for any strings, the arguments are refused or hold only flags amp chose, values that are no flags, and the image last after --', () => {
    const text = fc.oneof(fc.string({maxLength: 40}), fc.string({unit: 'binary', maxLength: 40}), fc.constantFrom(...HOSTILE_NETWORKS))
    const numRuns = 3000
    fc.assert(
      fc.property(text, text, text, text, (fn, image, network, callId) => {
        const args = argsOrRefused({...base, function: fn, image, network, callId})
        if (!args) return
        expect(args.at(-2)).to.equal('--')
        expect(args.at(-1)).to.equal(image)
        for (const [i, arg] of args.entries()) {
          expect(arg, 'no whitespace or control character anywhere').to.match(/^[\x21-\x7e]+$/)
          if (VALUE_AFTER.has(args[i - 1]) || i === args.length - 1) expect(arg.startsWith('-'), arg).to.equal(false)
        }
        expect(network).to.not.equal('host')
      }),
      {numRuns},
    )
    console.log(`      dockerRunArgs property cases: ${numRuns}`)
  })
})
