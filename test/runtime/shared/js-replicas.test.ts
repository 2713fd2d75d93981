import {expect} from 'chai'

import {parseConfig, resolveSettings} from '../../../src/runtime/shared/config.js'
import {parseReplicas, wantedReplicas} from '../../../src/runtime/shared/js-replicas.js'

const info = (cluster: string | undefined, urls: string[]) => ({info: {cluster, connect_urls: urls} as never})

describe('JetStream replicas (js-replicas)', () => {
  it('reads auto and whole numbers from 1 to 5, and names the rule otherwise', () => {
    expect(parseReplicas('auto')).to.equal('auto')
    expect(parseReplicas('3')).to.equal(3)
    expect(parseReplicas(5)).to.equal(5)
    for (const bad of ['0', '6', '2.5', 'three', '', -1, true]) expect(() => parseReplicas(bad), String(bad)).to.throw(/auto or a whole number from 1 to 5/)
  })

  it('auto asks for 3 on a cluster whose INFO lists 3 or more servers, else 1', () => {
    expect(wantedReplicas(info('amp', ['10.0.0.1:4222', '10.0.0.2:4222', '10.0.0.3:4222']))).to.equal(3)
    expect(wantedReplicas(info('amp', ['10.0.0.1:4222', '10.0.0.2:4222', '10.0.0.3:4222', '10.0.0.4:4222', '10.0.0.5:4222']))).to.equal(3)
    expect(wantedReplicas(info('amp', ['10.0.0.1:4222', '10.0.0.2:4222']))).to.equal(1)
    // The same server listed twice is one server.
    expect(wantedReplicas(info('amp', ['10.0.0.1:4222', '10.0.0.1:4222', '10.0.0.2:4222']))).to.equal(1)
    expect(wantedReplicas(info(undefined, ['10.0.0.1:4222', '10.0.0.2:4222', '10.0.0.3:4222']))).to.equal(1)
    expect(wantedReplicas({info: undefined})).to.equal(1)
  })

  it('a number is taken as given, whatever the cluster', () => {
    expect(wantedReplicas(info(undefined, []), 2)).to.equal(2)
    expect(wantedReplicas(info('amp', ['a:1', 'b:1', 'c:1']), 1)).to.equal(1)
  })

  it('comes from --js-replicas / AMP_JS_REPLICAS, else the config file, else auto', async () => {
    expect(resolveSettings({}).jsReplicas).to.equal('auto')
    const file = await parseConfig('js-replicas: 1', 'f')
    expect(resolveSettings({}, file).jsReplicas).to.equal(1)
    expect(resolveSettings({'js-replicas': '3'}, file).jsReplicas).to.equal(3)
    expect(() => resolveSettings({'js-replicas': '7'})).to.throw(/invalid --js-replicas: must be auto or a whole number from 1 to 5, got "7"/)
    let error: Error | undefined
    await parseConfig('js-replicas: many', 'f').catch((caught: Error) => (error = caught))
    expect(error?.message).to.match(/key "js-replicas": must be auto/)
  })
})
