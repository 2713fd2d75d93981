import {expect} from 'chai'
import {existsSync, readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

const root = new URL('../../', import.meta.url)
const pjson = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {exports: Record<string, string>}

/** Where tsc compiles a dist file from. */
const sourceOf = (target: string): string => fileURLToPath(new URL(target.replace(/^\.\/dist\//, './src/').replace(/\.js$/, '.ts'), root))

describe('the package as a library (package.json "exports")', () => {
  for (const [subpath, target] of Object.entries(pjson.exports)) {
    it(`${subpath} points at a module the build makes (${target})`, () => {
      expect(existsSync(target.startsWith('./dist/') ? sourceOf(target) : fileURLToPath(new URL(target, root))), target).to.equal(true)
    })
  }

  it('"." gives the client, its errors and exit codes', async () => {
    const library = await import(sourceOf(pjson.exports['.']))
    expect(library.AmpClient).to.be.a('function')
    expect(library.AmpError).to.be.a('function')
    expect(library.EXIT).to.be.an('object')
  })

  it('the daemons are subpaths: amp/listener, amp/worker, amp/stack', async () => {
    expect((await import(sourceOf(pjson.exports['./listener']))).startListener).to.be.a('function')
    expect((await import(sourceOf(pjson.exports['./worker']))).startWorker).to.be.a('function')
    expect((await import(sourceOf(pjson.exports['./stack']))).startStack).to.be.a('function')
  })
})
