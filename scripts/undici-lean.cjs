'use strict'
/**
 * What amp's bundled CLI takes from undici: `request` and `Agent`, from undici's own files. undici's
 * index loads everything it has (fetch, WebSocket, EventSource, caches, mocks, proxies...), which is
 * most of `amp function ls`'s startup time (bench/cli-startup.ts); amp uses none of it. Only the
 * bundle uses this file (scripts/bundle.ts aliases `undici` to it); the sources, and the tests, load
 * undici itself. test/commands/built-cli.integration.test.ts runs the bundle against a real listener.
 */
const Agent = require('undici/lib/dispatcher/agent.js')
const requestApi = require('undici/lib/api/api-request.js')
const {InvalidArgumentError} = require('undici/lib/core/errors.js')
// Loading it installs undici's global Agent when no other copy of undici has.
const {getGlobalDispatcher} = require('undici/lib/global.js')

/** undici's request(url, options): options.dispatcher, or the global Agent, sends it. */
function request(url, options = {}) {
  if (typeof url !== 'string' && !(url instanceof URL)) throw new InvalidArgumentError('invalid url')
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('invalid opts')
  const target = new URL(url)
  const {dispatcher = getGlobalDispatcher(), ...rest} = options
  return requestApi.call(dispatcher, {
    ...rest,
    origin: target.origin,
    path: `${target.pathname}${target.search}`,
    method: rest.method || (rest.body ? 'PUT' : 'GET'),
  })
}

module.exports = {Agent, request}
