/**
 * A tiny in-memory stand-in for the listener's HTTP API (docs/http-api.md), on a real loopback
 * port, for command tests. It answers as the documented API does; `onInvoke` decides each call.
 */
import {randomUUID} from 'node:crypto'
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {
  applyPatch,
  checkFunctionInput,
  type FunctionPatch,
  type FunctionSpec,
  publicSpec,
  type StoredFunction,
  storedFunction,
} from '../../src/runtime/shared/function-spec.js'
import {HTTP_STATUS, isAmpError} from '../../src/runtime/shared/errors.js'
import type {CallRecord, DeadLetter} from '../../src/runtime/shared/http-contract.js'

export type FakeCallAnswer =
  | {exitCode: number; stdout?: Buffer | string; stderr?: Buffer | string; stderrTruncated?: boolean}
  | {status: number; code: string; message: string}
  | {raw: {status: number; contentType?: string; body: string}}
  /** A streamed answer (Prefer: stream): 200, chunked, these body chunks, then these trailers. */
  | {stream: {chunks: Array<Buffer | string>; trailers: Record<string, string>}}

export interface FakeRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  body: Buffer
}

export interface FakeListener {
  url: string
  /** As a listener stores them: with the environment's values, which the API never shows. */
  functions: Map<string, StoredFunction>
  requests: FakeRequest[]
  /** Default: echo the input on stdout, exit 0. */
  onInvoke: (name: string, input: Buffer) => FakeCallAnswer
  /** Answer the function API with 503 registry_unavailable, as a listener without etcd does. */
  registryDown: boolean
  /** Answer everything with an HTML 502 page, as a reverse proxy in front of a dead listener does. */
  behindDeadProxy: boolean
  /** When set, every request needs "Authorization: Bearer <token>": 401 without, 403 with another. */
  token?: string
  /** Asynchronous calls by id: a call with `Prefer: respond-async` (or of a fire-and-forget function) is stored here queued. */
  calls: Map<string, CallRecord>
  /** What GET /_amp/v1/calls/<id> answers for a known call; default: the stored record. */
  onGetCall: (record: CallRecord, wait: string | null) => CallRecord | {raw: {status: number; contentType?: string; body: string}}
  deadLetters: DeadLetter[]
  /** Answer asynchronous calls with 503 service_unavailable, as a listener whose JetStream cannot store them. */
  queueDown: boolean
  /** Adds a function; returns it as the API shows it. */
  add(name: string, image?: string, timeoutMs?: number, env?: Record<string, string>): FunctionSpec
  close(): Promise<void>
}

let calls = 0

export async function startFakeListener(): Promise<FakeListener> {
  const functions = new Map<string, StoredFunction>()
  const requests: FakeRequest[] = []
  const fake: FakeListener = {
    url: '',
    functions,
    requests,
    onInvoke: (_name, input) => ({exitCode: 0, stdout: input, stderr: ''}),
    registryDown: false,
    behindDeadProxy: false,
    calls: new Map(),
    onGetCall: (record) => record,
    deadLetters: [],
    queueDown: false,
    add(name, image = 'busybox:1.36', timeoutMs = 30_000, env = {}) {
      const time = new Date('2025-01-31T14:05:09.123Z').toISOString()
      const spec = storedFunction({name, image, timeoutMs, env, createdAt: time, updatedAt: time})
      functions.set(name, spec)
      return publicSpec(spec)
    },
    close: async () => {},
  }

  const json = (res: ServerResponse, status: number, body: unknown, callId?: string) => {
    res.writeHead(status, {'content-type': 'application/json', ...(callId ? {'amp-call-id': callId} : {})})
    res.end(JSON.stringify(body))
  }
  const error = (res: ServerResponse, status: number, code: string, message: string, callId = 'c-err') => {
    res.setHeader('amp-error-code', code)
    json(res, status, {error: {code, message, callId}}, callId)
  }

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    const path = url.pathname
    if (fake.behindDeadProxy) {
      res.writeHead(502, {'content-type': 'text/html'})
      return res.end('<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>')
    }
    if (fake.token !== undefined && req.headers.authorization !== `Bearer ${fake.token}`) {
      if (req.headers.authorization === undefined) return error(res, 401, 'unauthorized', 'this listener requires a token: send "Authorization: Bearer <token>"')
      return error(res, 403, 'forbidden', 'the token is not valid for this listener')
    }
    const callRoute = /^\/_amp\/v1\/calls\/([^/]+)$/.exec(path)
    if (callRoute && req.method === 'GET') {
      const record = fake.calls.get(callRoute[1])
      if (!record) return error(res, 404, 'call_not_found', `no call ${callRoute[1]}: unknown, or past its retention`)
      const answer = fake.onGetCall(record, url.searchParams.get('wait'))
      if ('raw' in answer) {
        res.writeHead(answer.raw.status, answer.raw.contentType ? {'content-type': answer.raw.contentType} : {})
        return res.end(answer.raw.body)
      }
      return json(res, 200, answer)
    }
    if (path === '/_amp/v1/dead-letters' && req.method === 'GET') {
      const only = url.searchParams.get('function')
      const letters = fake.deadLetters.filter((letter) => only === null || letter.function === only)
      return json(res, 200, {deadLetters: letters.slice(-Number(url.searchParams.get('limit') ?? 100))})
    }
    const api = /^\/_amp\/v1\/functions(?:\/([^/]+))?$/.exec(path)
    if (api && fake.registryDown) {
      return error(res, 503, 'registry_unavailable', 'the function registry (etcd) is unavailable: connection refused')
    }
    if (api) {
      const name = api[1]
      if (!name && req.method === 'GET') {
        return json(res, 200, {functions: [...functions.values()].sort((a, b) => a.name.localeCompare(b.name)).map(publicSpec)})
      }
      if (name && req.method === 'GET') {
        const spec = functions.get(name)
        return spec ? json(res, 200, publicSpec(spec)) : error(res, 404, 'function_not_found', `no function named ${name}`)
      }
      if (name && req.method === 'DELETE') {
        const spec = functions.get(name)
        if (!spec) return error(res, 404, 'function_not_found', `no function named ${name}`)
        functions.delete(name)
        return json(res, 200, publicSpec(spec))
      }
      if (name && req.method === 'PUT') {
        const input = checkFunctionInput(name, JSON.parse(body.toString('utf8')))
        const existing = functions.get(name)
        if (existing && url.searchParams.get('replace') !== 'true') {
          return error(res, 409, 'function_exists', `function ${name} already exists`)
        }
        const now = new Date().toISOString()
        const spec: StoredFunction = {...input, createdAt: existing?.createdAt ?? now, updatedAt: now}
        functions.set(name, spec)
        return json(res, existing ? 200 : 201, publicSpec(spec))
      }
      if (name && req.method === 'PATCH') {
        const existing = functions.get(name)
        if (!existing) return error(res, 404, 'function_not_found', `no function named ${name}`)
        const patch = JSON.parse(body.toString('utf8')) as FunctionPatch
        const spec = applyPatch(existing, patch, new Date('2025-02-01T09:30:00.000Z').toISOString())
        functions.set(name, spec)
        return json(res, 200, publicSpec(spec))
      }
      return error(res, 405, 'method_not_allowed', `${req.method} is not allowed on ${path}`)
    }
    const call = /^\/([a-z0-9-]+)$/.exec(path)
    if (call && req.method === 'POST') {
      const name = call[1]
      const callId = `c${++calls}`
      if (!functions.has(name)) return error(res, 404, 'function_not_found', `no function named ${name}`, callId)
      const prefer = /(^|,)\s*respond-async\s*(,|$)/i.test(String(req.headers.prefer ?? ''))
      if (prefer || functions.get(name)!.fireAndForget) {
        if (fake.queueDown) return error(res, 503, 'service_unavailable', 'cannot queue the call: JetStream is unavailable', callId)
        const asyncId = randomUUID()
        const maxAttempts = functions.get(name)!.retries + 1
        const callbackUrl = req.headers['amp-callback-url'] as string | undefined
        const createdAt = new Date().toISOString()
        fake.calls.set(asyncId, {callId: asyncId, function: name, state: 'queued', attempts: 0, maxAttempts, createdAt, deadLetter: false, ...(callbackUrl ? {callbackUrl} : {})})
        const statusUrl = `/_amp/v1/calls/${asyncId}`
        res.writeHead(202, {
          'content-type': 'application/json',
          'amp-call-id': asyncId,
          location: statusUrl,
          ...(prefer ? {'preference-applied': 'respond-async'} : {}),
        })
        return res.end(JSON.stringify({callId: asyncId, function: name, state: 'queued', statusUrl}))
      }
      const answer = fake.onInvoke(name, body)
      if ('raw' in answer) {
        res.writeHead(answer.raw.status, answer.raw.contentType ? {'content-type': answer.raw.contentType} : {})
        return res.end(answer.raw.body)
      }
      if ('code' in answer) return error(res, answer.status, answer.code, answer.message, callId)
      if ('stream' in answer) {
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'amp-call-id': callId,
          'preference-applied': 'stream',
          trailer: 'Amp-Exit-Code, Amp-Outcome, Amp-Error, Amp-Duration-Ms',
        })
        for (const chunk of answer.stream.chunks) res.write(chunk)
        res.addTrailers(answer.stream.trailers)
        return res.end()
      }
      const stdout = Buffer.from(answer.stdout ?? '')
      const stderr = Buffer.from(answer.stderr ?? '')
      res.writeHead(answer.exitCode === 0 ? 200 : 500, {
        'content-type': 'application/vnd.amp.result+json',
        'amp-call-id': callId,
        'amp-exit-code': String(answer.exitCode),
      })
      return res.end(
        JSON.stringify({
          callId,
          function: name,
          exitCode: answer.exitCode,
          stdout: stdout.toString('base64'),
          stderr: stderr.toString('base64'),
          stderrTruncated: answer.stderrTruncated ?? false,
          durationMs: 12,
          worker: 'w-fake',
        }),
      )
    }
    return error(res, 404, 'not_found', `no route ${path}`)
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      requests.push({method: req.method ?? '', path: req.url ?? '', headers: req.headers, body})
      try {
        handle(req, res, body)
      } catch (thrown) {
        // What the listener refuses (a patch that leaves reuse without prestart...), it answers as the API does.
        if (!isAmpError(thrown)) throw thrown
        error(res, HTTP_STATUS[thrown.code], thrown.code, thrown.message)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return fake
}
