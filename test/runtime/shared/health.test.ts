import {expect} from 'chai'

import {cachedCheck, checkReadiness} from '../../../src/runtime/shared/health.js'

describe('health', () => {
  describe('checkReadiness', () => {
    it('is ready when every check passes and it is not draining', async () => {
      const report = await checkReadiness({nats: () => true, etcd: async () => true}, () => false)
      expect(report).to.deep.equal({ready: true, body: {status: 'ok', checks: {nats: true, etcd: true, draining: false}}})
    })

    it('is unavailable when one check fails, and counts a check that throws as failed', async () => {
      const report = await checkReadiness(
        {
          nats: () => true,
          etcd: async () => {
            throw new Error('refused')
          },
        },
        () => false,
      )
      expect(report).to.deep.equal({ready: false, body: {status: 'unavailable', checks: {nats: true, etcd: false, draining: false}}})
    })

    it('is draining (not ready) while shutting down, even with every check passing', async () => {
      const report = await checkReadiness({nats: () => true}, () => true)
      expect(report).to.deep.equal({ready: false, body: {status: 'draining', checks: {nats: true, draining: true}}})
    })
  })

  describe('cachedCheck', () => {
    it('reuses an answer while it is fresh and checks again after', async () => {
      let now = 0
      let runs = 0
      let answer = true
      const check = cachedCheck(async () => (runs++, answer), {maxAgeMs: 2000, now: () => now})
      expect(await check()).to.equal(true)
      answer = false
      now = 1999
      expect(await check()).to.equal(true)
      expect(runs).to.equal(1)
      now = 2000
      expect(await check()).to.equal(false)
      expect(runs).to.equal(2)
    })

    it('shares one check in progress between concurrent callers', async () => {
      let runs = 0
      let release!: (value: boolean) => void
      const check = cachedCheck(() => {
        runs++
        return new Promise<boolean>((resolve) => (release = resolve))
      })
      const answers = Promise.all([check(), check(), check()])
      release(true)
      expect(await answers).to.deep.equal([true, true, true])
      expect(runs).to.equal(1)
    })

    it('counts a check that hangs past its timeout, or rejects, as false', async () => {
      const hung = cachedCheck(() => new Promise<boolean>(() => {}), {timeoutMs: 20})
      expect(await hung()).to.equal(false)
      const failing = cachedCheck(async () => {
        throw new Error('down')
      })
      expect(await failing()).to.equal(false)
    })
  })
})
