/**
 * The listener's HTTP API: its routes (routes/), in the order the router (router.ts) tries them.
 * Re-exports what listener.ts and the tests use from the route files.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {ApiContext} from './api-context.js'
import {createRouter} from './router.js'
import {asyncRoutes} from './routes/async.js'
import {callRoutes} from './routes/calls.js'
import {functionRoutes} from './routes/functions.js'
import {logRoutes} from './routes/logs.js'
import {opsRoutes} from './routes/ops.js'

export type {ApiContext} from './api-context.js'
export {API_PREFIX, RESULT_MEDIA_TYPE} from '../shared/http-contract.js'
export {readBody, sendJson} from './http-io.js'
export {checkCallbackUrl, prefers, prefersAsync} from './routes/calls.js'

export function createRequestHandler(ctx: ApiContext): (req: IncomingMessage, res: ServerResponse) => void {
  return createRouter(
    [
      ...opsRoutes(ctx),
      // Before the function routes: .../functions/<name>/logs is also under .../functions/.
      ...logRoutes(ctx),
      ...functionRoutes(ctx),
      ...asyncRoutes(ctx),
      // Last: it takes every path outside /_amp/.
      ...callRoutes(ctx),
    ],
    ctx,
  )
}
