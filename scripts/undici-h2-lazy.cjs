'use strict'
/**
 * undici's client requires its HTTP/2 half (and with it node:http2) when it loads; amp's CLI speaks
 * HTTP/1.1, so a command would load node:http2 for nothing (bench:cli). In the bundle only
 * (scripts/bundle.ts), client.js gets this instead: the same connectH2, loaded on its first call,
 * which only comes when a server picks h2 over TLS (ALPN) and undici allows it. esbuild bundles the
 * require below like any other: it is the bundled module, run on first use, sharing the bundled
 * undici's internals (its symbols); a copy from node_modules would not (built-cli test checks).
 */
let connectH2

module.exports = function lazyConnectH2(client, socket) {
  connectH2 ??= require('undici/lib/dispatcher/client-h2.js')
  return connectH2(client, socket)
}
