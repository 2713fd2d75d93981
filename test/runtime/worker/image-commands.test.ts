import {expect} from 'chai'
import type {execa} from 'execa'

import {ImageCommands, parseInspect} from '../../../src/runtime/worker/image-commands.js'

const ID = `sha256:${'a'.repeat(64)}`
const line = (entrypoint: unknown, cmd: unknown, os: unknown = 'linux', id: unknown = ID) => [id, entrypoint, cmd, os].map((v) => JSON.stringify(v)).join('\t')

/** A docker CLI that answers `image inspect` from a table, and counts what it was asked. */
function fakeDocker(images: Record<string, string>) {
  const asked: string[][] = []
  const exec = (async (_file: string, args: string[]) => {
    asked.push(args)
    if (args[0] === 'pull') return {failed: false, stdout: '', stderr: ''}
    const answer = images[args.at(-1)!]
    return answer === undefined
      ? {failed: true, stdout: '', stderr: `Error: No such image: ${args.at(-1)}\n`, shortMessage: 'exit 1'}
      : {failed: false, stdout: `${answer}\n`, stderr: ''}
  }) as unknown as typeof execa
  return {asked, exec}
}

describe('image commands for the runner', () => {
  describe('parseInspect', () => {
    it('runs ENTRYPOINT followed by CMD, each as docker stores it (shell form is already ["/bin/sh", "-c", ...])', () => {
      expect(parseInspect(line(['/bin/tr'], ['a-z', 'A-Z']))).to.deep.equal({command: {id: ID, argv: ['/bin/tr', 'a-z', 'A-Z']}})
      expect(parseInspect(line(null, ['/bin/sh', '-c', 'cat; exit 3']))).to.deep.equal({command: {id: ID, argv: ['/bin/sh', '-c', 'cat; exit 3']}})
      expect(parseInspect(line(['/entry'], null))).to.deep.equal({command: {id: ID, argv: ['/entry']}})
    })

    it('cannot run an image without a command, for another OS, or with an answer it cannot read', () => {
      expect(parseInspect(line(null, null)).unusable).to.equal('the image has no ENTRYPOINT or CMD')
      expect(parseInspect(line([], [])).unusable).to.equal('the image has no ENTRYPOINT or CMD')
      expect(parseInspect(line(['x'], null, 'windows')).unusable).to.match(/windows/)
      expect(parseInspect(line(['x'], null, 'linux', 'sha256:nope')).unusable).to.match(/no image id/)
      expect(parseInspect(line(['x', 3], null)).unusable).to.match(/not a list of strings/)
      expect(parseInspect(line(['x\u0000y'], null)).unusable).to.match(/not a list of strings/)
      expect(parseInspect(line(['x'.repeat(200_000)], null)).unusable).to.match(/too long/)
      expect(parseInspect('not json').unusable).to.match(/cannot read/)
    })
  })

  describe('ImageCommands', () => {
    it('reads each image once while image events are followed, and again after an image event', async () => {
      const docker = fakeDocker({'my/fn:1': line(['/fn'], null)})
      const images = new ImageCommands({docker: 'docker', pull: 'missing', exec: docker.exec})
      images.following = true
      const [a, b] = await Promise.all([images.resolve('my/fn:1'), images.resolve('my/fn:1')])
      expect(a).to.deep.equal({command: {id: ID, argv: ['/fn']}})
      expect(b).to.deep.equal(a)
      await images.resolve('my/fn:1')
      expect(docker.asked).to.have.length(1)
      expect(docker.asked[0].slice(0, 2)).to.deep.equal(['image', 'inspect'])
      expect(docker.asked[0].slice(-2)).to.deep.equal(['--', 'my/fn:1'])
      images.invalidate()
      await images.resolve('my/fn:1')
      expect(docker.asked).to.have.length(2)
    })

    it('trusts what it read for seconds only while image events are not followed', async () => {
      let now = 0
      const docker = fakeDocker({'my/fn:1': line(['/fn'], null)})
      const images = new ImageCommands({docker: 'docker', pull: 'missing', exec: docker.exec, now: () => now})
      await images.resolve('my/fn:1')
      now += 4000
      await images.resolve('my/fn:1')
      expect(docker.asked).to.have.length(1)
      now += 2000
      await images.resolve('my/fn:1')
      expect(docker.asked).to.have.length(2)
    })

    it('says why an image cannot be read, and reads it again later (docker run may have pulled it meanwhile)', async () => {
      let now = 0
      const docker = fakeDocker({})
      const images = new ImageCommands({docker: 'docker', pull: 'missing', exec: docker.exec, now: () => now})
      images.following = true
      expect((await images.resolve('my/missing:1')).unusable).to.equal('docker image inspect failed: Error: No such image: my/missing:1')
      await images.resolve('my/missing:1')
      expect(docker.asked).to.have.length(1)
      now += 10_000
      await images.resolve('my/missing:1')
      expect(docker.asked).to.have.length(2)
    })

    it('with --pull always pulls before every read, and keeps nothing', async () => {
      const docker = fakeDocker({'my/fn:1': line(['/fn'], null)})
      const images = new ImageCommands({docker: 'docker', pull: 'always', exec: docker.exec})
      images.following = true
      await images.resolve('my/fn:1')
      await images.resolve('my/fn:1')
      expect(docker.asked.map((args) => args[0])).to.deep.equal(['pull', 'image', 'pull', 'image'])
      expect(docker.asked[0]).to.deep.equal(['pull', '--quiet', '--', 'my/fn:1'])
    })
  })
})
