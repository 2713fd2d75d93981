import {existsSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {Etcd3} from 'etcd3'
import {execa} from 'execa'
import {probeEtcd, probeNats} from '../../src/runtime/ops/servers.js'
import {DOCKER, requireDocker, startEtcd, startNats} from './services.js'
import {ensureTestImages, TEST_IMAGES} from './images.js'
import {waitFor} from './wait.js'

describe('test helpers (integration)', () => {
  describe('startNats', () => {
    it('serves on a free loopback port, survives a crash through restart(), and stops', async () => {
      const nats = await startNats({maxPayload: 64 * 1024})
      try {
        expect(nats.url).to.match(/^nats:\/\/127\.0\.0\.1:\d+$/)
        expect(await probeNats(nats.url)).to.equal(true)

        nats.kill('SIGKILL')
        await waitFor('nats-server to stop answering', async () => (await probeNats(nats.url)) ? undefined : true, 5000, 50)
        await nats.restart()
        expect(await probeNats(nats.url)).to.equal(true)
      } finally {
        await nats.stop()
      }
      expect(await probeNats(nats.url)).to.equal(false)
      expect(existsSync(path.dirname(nats.logFile)), 'temp dir removed').to.equal(false)
      await nats.stop() // idempotent
    })

    it('applies maxPayload', async () => {
      const nats = await startNats({maxPayload: 64 * 1024})
      try {
        const {connect} = await import('@nats-io/transport-node')
        const nc = await connect({servers: nats.url})
        try {
          expect(nc.info?.max_payload).to.equal(64 * 1024)
        } finally {
          await nc.close()
        }
      } finally {
        await nats.stop()
      }
    })

    it('gives two servers different ports', async () => {
      const [a, b] = await Promise.all([startNats(), startNats()])
      try {
        expect(a.url).to.not.equal(b.url)
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    })
  })

  describe('startEtcd', () => {
    it('serves, keeps its data across restart(), and stops', async () => {
      const etcd = await startEtcd()
      try {
        expect(etcd.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
        expect(await probeEtcd(etcd.url)).to.equal('healthy')
        const client = new Etcd3({hosts: etcd.url})
        try {
          await client.put('amp-test').value('kept')
          await etcd.restart()
          expect(await client.get('amp-test').string()).to.equal('kept')
        } finally {
          client.close()
        }
      } finally {
        await etcd.stop()
      }
      expect(await probeEtcd(etcd.url)).to.equal('unreachable')
      expect(existsSync(path.dirname(etcd.logFile)), 'temp dir removed').to.equal(false)
    })

    it('hang() returns only once etcd answers nothing; SIGCONT brings it back', async () => {
      const etcd = await startEtcd()
      const client = new Etcd3({hosts: etcd.url})
      try {
        await client.put('amp-test').value('kept')
        // Several rounds: a plain SIGSTOP lets a request sent right after it be answered, often on a busy machine.
        for (let round = 0; round < 10; round++) {
          await etcd.hang()
          const read = client.get('amp-test').string()
          const answer = await Promise.race([read, sleep(150, 'no answer')])
          expect(answer, `round ${round}`).to.equal('no answer')
          etcd.kill('SIGCONT')
          expect(await read, `round ${round}, once continued`).to.equal('kept')
        }
      } finally {
        client.close()
        await etcd.stop()
      }
    })
  })

  describe('ensureTestImages', () => {
    before(async function () {
      this.timeout(180_000)
      await requireDocker()
      await ensureTestImages()
    })

    const run = (image: string, input: string) =>
      execa(DOCKER, ['run', '-i', '--rm', '--network', 'none', image], {input, reject: false})

    it('cat echoes stdin', async () => {
      const result = await run(TEST_IMAGES.cat, 'a\nb\0c')
      expect(result.exitCode).to.equal(0)
      expect(result.stdout).to.equal('a\nb\0c')
    })

    it('fail copies stdin, says boom and exits 3', async () => {
      const result = await run(TEST_IMAGES.fail, 'in')
      expect(result.exitCode).to.equal(3)
      expect(result.stdout).to.equal('in')
      expect(result.stderr).to.equal('boom')
    })

    it('stderr logs the input', async () => {
      const result = await run(TEST_IMAGES.stderr, 'hi')
      expect(result.stdout).to.equal('hi')
      expect(result.stderr).to.equal('log: hi')
    })

    it('title writes Title Case and logs the input', async () => {
      const result = await run(TEST_IMAGES.title, 'hello amp functions\n')
      expect(result.exitCode).to.equal(0)
      expect(result.stdout).to.equal('Hello Amp Functions')
      expect(result.stderr).to.equal('input hello amp functions')
    })

    it('is quick the second time (images cached)', async () => {
      const start = Date.now()
      await ensureTestImages()
      expect(Date.now() - start).to.be.below(100)
    })
  })
})
