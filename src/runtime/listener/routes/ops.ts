/** The listener's health checks and metrics on its API port: `GET /_amp/v1/health`, `.../health/live`, `.../health/ready`, `.../metrics`. */
import type {ApiContext} from '../api-context.js'
import {AmpError} from '../../shared/errors.js'
import {checkReadiness, type ReadinessReport} from '../../shared/health.js'
import {API_PREFIX} from '../../shared/http-contract.js'
import {answerOps} from '../../shared/ops-server.js'
import {sendJson} from '../http-io.js'
import {exactly, type Handler, type Route} from '../router.js'

/** Served as the ops port serves them (shared/ops-server.ts), under the API prefix. */
const OPS_PATHS = ['/health/live', '/health/ready', '/metrics']

export function opsRoutes(ctx: Pick<ApiContext, 'readiness' | 'draining' | 'metrics'>): Route[] {
  // Same answer as /health/ready, with only the status in the body (as before /health/ready existed).
  const health: Handler = async (_req, res) => {
    const report = await readiness(ctx)
    sendJson(res, report.ready ? 200 : 503, {status: report.body.status})
  }
  const ops: Handler = async (req, res, {param}) => {
    const served = {registry: ctx.metrics?.registry, readiness: () => readiness(ctx)}
    if (!(await answerOps(req, res, param, served))) throw new AmpError('not_found', 'this listener keeps no metrics')
  }
  return [
    {match: exactly(`${API_PREFIX}/health`), methods: {GET: health, HEAD: health}},
    // The parameter is the path without the API prefix, as answerOps takes it.
    {match: (path) => OPS_PATHS.find((ops) => path === `${API_PREFIX}${ops}`), methods: {GET: ops, HEAD: ops}},
  ]
}

function readiness(ctx: Pick<ApiContext, 'readiness' | 'draining'>): Promise<ReadinessReport> {
  return ctx.readiness?.() ?? checkReadiness({}, ctx.draining)
}
