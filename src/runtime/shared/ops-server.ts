/**
 * The worker's optional operations endpoint (--metrics-port): GET /metrics (Prometheus text),
 * /health/live and /health/ready. It serves nothing else; calls never come this way.
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {AmpError} from './errors.js'
import type {ReadinessReport} from './health.js'
import type {Registry} from './metrics.js'

export interface OpsServerOptions {
  host: string
  /** 0 picks a free port. */
  port: number
  registry: Registry
  readiness: () => Promise<ReadinessReport>
}

export interface OpsServer {
  /** http://host:port actually bound. */
  url: string
  close(): Promise<void>
}

/** Answers GET/HEAD /metrics, /health/live and /health/ready under `prefix` ("" for the worker, /_amp/v1 for the listener). */
export async function answerOps(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  ctx: {registry?: Registry; readiness?: () => Promise<ReadinessReport>},
): Promise<boolean> {
  if (path === '/health/live') {
    sendJson(res, 200, {status: 'ok'})
    return true
  }
  if (path === '/health/ready' && ctx.readiness) {
    const report = await ctx.readiness()
    sendJson(res, report.ready ? 200 : 503, report.body)
    return true
  }
  if (path === '/metrics' && ctx.registry) {
    const text = await ctx.registry.metrics()
    res.statusCode = 200
    res.setHeader('Content-Type', ctx.registry.contentType)
    res.end(req.method === 'HEAD' ? undefined : text)
    return true
  }
  return false
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const handled = req.method === 'GET' || req.method === 'HEAD' ? answerOps(req, res, path, options) : Promise.resolve(false)
    handled
      .then((done) => {
        if (done) return
        if (['/metrics', '/health/live', '/health/ready'].includes(path)) {
          res.setHeader('Allow', 'GET, HEAD')
          sendJson(res, 405, {error: {code: 'method_not_allowed', message: `use GET on ${path}`}})
        } else {
          sendJson(res, 404, {error: {code: 'not_found', message: 'this port serves /metrics, /health/live and /health/ready'}})
        }
      })
      .catch((error: Error) => sendJson(res, 500, {error: {code: 'internal', message: error.message}}))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message
      reject(
        new AmpError('service_unavailable', `cannot serve metrics on ${options.host}:${options.port}: ${reason}`, {
          suggestions: ['choose another port with --metrics-port or AMP_METRICS_PORT'],
        }),
      )
    })
    server.listen(options.port, options.host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closing: Promise<void> | undefined
  return {
    url: `http://${host}:${address.port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end()
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json')
  res.end(JSON.stringify(body))
}
