/**
 * `GET /_amp/v1/functions/<name>/logs?call=ID&since=10m&follow=true`: a function's log lines as
 * NDJSON, one LogLine object per line (docs/operations.md "Logs"). With follow, the answer stays open and new
 * lines come as calls write them, until the client goes away or the listener drains.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {CallLogReader, LogQuery} from '../../shared/call-logs.js'
import {AmpError} from '../../shared/errors.js'
import type {Logger} from '../../shared/logger.js'
import type {Registry} from '../registry.js'
import {checkCallId, NDJSON_MEDIA_TYPE, parseSince} from '../../shared/log-query.js'
import {checkName} from '../../shared/validate.js'
import {matching, type Route} from '../router.js'

/** How often a following request checks whether the listener is draining. */
const DRAIN_CHECK_MS = 250

export interface LogsContext {
  registry: Pick<Registry, 'get'>
  logs?: Pick<CallLogReader, 'open'>
  logger: Logger
  draining: () => boolean
}

export function logRoutes(ctx: LogsContext): Route[] {
  return [{match: matching(/^\/_amp\/v1\/functions\/([^/]+)\/logs$/), methods: {GET: (req, res, {param}) => serveLogs(ctx, param, req, res)}}]
}

/** A call id as workers accept them (a UUID from the listener). */
export function parseLogQuery(name: string, url: string, now = Date.now()): LogQuery {
  const params = new URL(url, 'http://listener').searchParams
  const query: LogQuery = {function: checkName(name)}
  const call = params.get('call')
  if (call !== null && call !== '') query.callId = checkCallId(call)
  const since = params.get('since')
  if (since !== null && since !== '') query.since = parseSince(since, now)
  const follow = params.get('follow')
  if (follow !== null && !['', 'true', '1', 'false', '0'].includes(follow)) {
    throw new AmpError('bad_request', 'follow must be true or false')
  }
  query.follow = follow === 'true' || follow === '1'
  return query
}

export async function serveLogs(ctx: LogsContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const query = parseLogQuery(name, req.url ?? '/')
  if (!(await ctx.registry.get(query.function))) {
    // Lines of a removed function still age out of the stream; a typo should not look like "no lines".
    throw new AmpError('function_not_found', `no function named ${JSON.stringify(query.function)}`, {
      suggestions: ['list functions with: amp function ls'],
    })
  }
  if (!ctx.logs) throw new AmpError('service_unavailable', 'this listener serves no function logs')
  const cursor = await ctx.logs.open(query)
  res.once('close', cursor.close)
  const watch = query.follow ? setInterval(() => ctx.draining() && cursor.close(), DRAIN_CHECK_MS) : undefined
  let count = 0
  try {
    res.writeHead(200, {'Content-Type': NDJSON_MEDIA_TYPE, 'Cache-Control': 'no-store'})
    // The client knows at once that it is connected, even if no line comes for a while.
    res.flushHeaders()
    for await (const line of cursor.lines) {
      count++
      if (!res.write(`${JSON.stringify(line)}\n`)) await drained(res)
    }
  } finally {
    clearInterval(watch)
    cursor.close()
  }
  res.end()
  ctx.logger.debug('logs served', {fn: query.function, call: query.callId, follow: query.follow, lines: count})
}

/** Waits until the client takes more, or is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done)
      resolve()
    }
    res.once('drain', done).once('close', done)
  })
}
