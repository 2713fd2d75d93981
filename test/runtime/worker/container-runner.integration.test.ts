import {expect} from 'chai'
import {execa} from 'execa'

import {ContainerRunner} from '../../../src/runtime/worker/container-runner.js'
import {DOCKER, requireDocker} from '../../helpers/services.js'

describe('ContainerRunner.engine with the real docker CLI', () => {
  before(() => requireDocker())

  it("reports the engine's version when dockerd answers", async () => {
    const {stdout} = await execa(DOCKER, ['version', '--format', '{{.Server.Version}}'])
    expect(await new ContainerRunner({docker: DOCKER, workerId: 'w-1'}).engine()).to.deep.equal({version: stdout.trim()})
  })

  it('says the CLI is missing, in one line, when there is no such program', async () => {
    const {version, error} = await new ContainerRunner({docker: '/nonexistent/docker', workerId: 'w-1'}).engine()
    expect(version).to.equal(undefined)
    expect(error).to.equal('docker CLI not found (/nonexistent/docker): install docker or set --docker')
  })

  it("gives docker's own one-line reason when the daemon cannot be reached", async () => {
    const unreachable = ((file: string, args: readonly string[], options: Record<string, unknown>) =>
      execa(file, args, {...options, env: {DOCKER_HOST: 'unix:///nonexistent/docker.sock'}})) as unknown as typeof execa
    const {version, error} = await new ContainerRunner({docker: DOCKER, workerId: 'w-1', exec: unreachable}).engine()
    expect(version).to.equal(undefined)
    expect(error).to.match(/^Cannot connect to the Docker daemon at unix:\/\/\/nonexistent\/docker\.sock/)
    expect(error).not.to.contain('\n')
  })
})
