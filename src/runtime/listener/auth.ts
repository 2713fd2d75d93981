/**
 * Token authentication of the listener's HTTP API (docs/operations.md "Security"). With a token, everything
 * under /_amp/ needs `Authorization: Bearer <token>`, except the health checks (probes have no
 * token). With an invoke token, calls (POST /<fn>) need it or the admin token. Without tokens,
 * everything is open, as before.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import type {IncomingMessage, ServerResponse} from 'node:http'

import {API_PREFIX} from '../shared/http-contract.js'
import {AmpError} from '../shared/errors.js'

export interface AuthOptions {
  /** Admin token: the function API, metrics, logs, and calls too. */
  token?: string
  /** Calls only; when set, calls need this or the admin token. */
  invokeToken?: string
}

/** What a request needs: nothing, a call token (admin or invoke) or the admin token. */
export type Access = 'open' | 'invoke' | 'admin'

const OPEN_PATHS = new Set([`${API_PREFIX}/health`, `${API_PREFIX}/health/live`, `${API_PREFIX}/health/ready`])

/**
 * Which access a path needs: health checks are open; an asynchronous call's record is for whoever
 * may call (its id, a random UUID, is the caller's to know); the rest of /_amp/ is admin; anything
 * else is a call.
 */
export function accessFor(path: string): Access {
  if (OPEN_PATHS.has(path)) return 'open'
  if (path.startsWith(`${API_PREFIX}/calls/`)) return 'invoke'
  if (path.startsWith('/_amp/')) return 'admin'
  return 'invoke'
}

/** Checks one request's bearer token; throws unauthorized (401) or forbidden (403) and sets WWW-Authenticate. */
export type Authorize = (req: IncomingMessage, res: ServerResponse, path: string) => void

export function createAuthorizer(options: AuthOptions): Authorize {
  // Only digests are kept and compared: equal length, so timingSafeEqual applies and says nothing about the length.
  const admin = options.token === undefined ? undefined : digest(options.token)
  const invoke = options.invokeToken === undefined ? undefined : digest(options.invokeToken)
  return (req, res, path) => {
    const access = accessFor(path)
    const needed = access === 'open' ? [] : access === 'admin' ? [admin] : [invoke, invoke && admin]
    const accepted = needed.filter((item): item is Buffer => item !== undefined)
    if (accepted.length === 0) return
    const given = bearerToken(req.headers.authorization)
    if (given === undefined) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="amp"')
      throw new AmpError(
        'unauthorized',
        req.headers.authorization === undefined
          ? 'this listener requires a token: send "Authorization: Bearer <token>"'
          : 'malformed Authorization header: use "Authorization: Bearer <token>"',
      )
    }
    const presented = digest(given)
    // Compare with every accepted token, without stopping early.
    let ok = false
    for (const token of accepted) ok = timingSafeEqual(presented, token) || ok
    if (ok) return
    if (access === 'admin' && invoke !== undefined && timingSafeEqual(presented, invoke)) {
      throw new AmpError('forbidden', 'this token may only call functions; the function API needs the admin token')
    }
    throw new AmpError('forbidden', 'the token is not valid for this listener')
  }
}

/** The token of "Bearer <token>" (scheme in any case, RFC 7235), or undefined when missing or malformed. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^bearer +([\x21-\x7e]+) *$/i.exec(header ?? '')
  return match?.[1]
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}
