/** What the routes of the listener's HTTP API work with: its services, limits and hooks, injected by listener.ts (and by tests). */
import type {AsyncCalls} from './async-calls.js'
import type {Authorize} from './auth.js'
import type {Dispatcher} from './dispatcher.js'
import type {FunctionCache} from './function-cache.js'
import type {CallLogReader} from '../shared/call-logs.js'
import type {ReadinessReport} from '../shared/health.js'
import type {Logger} from '../shared/logger.js'
import type {ListenerMetrics} from '../shared/metrics.js'
import type {Registry} from './registry.js'

export interface ApiContext {
  registry: Pick<Registry, 'get' | 'list' | 'put' | 'remove' | 'update'>
  dispatcher: Pick<Dispatcher, 'call'> & Partial<Pick<Dispatcher, 'abandon'>>
  maxBodyBytes: number
  /** Calls (POST /<fn>) served at once; past it a call gets 429 before its body is read. Unlimited when absent. */
  maxInFlight?: number
  logger: Logger
  /** True once the listener is shutting down: new calls are turned away. */
  draining: () => boolean
  /** Readiness (NATS, etcd, draining); without it only draining counts. */
  readiness?: () => Promise<ReadinessReport>
  /** Counts calls; serves GET /_amp/v1/metrics. */
  metrics?: ListenerMetrics
  /** Reads function logs from JetStream (GET .../functions/<name>/logs); without it that route answers 503. */
  logs?: Pick<CallLogReader, 'open'>
  /** Checks the bearer token (auth.ts); without it every request is let in. */
  authorize?: Authorize
  /** Watch-backed copy of the registry: calls to known functions go on while etcd is unreachable. */
  functions?: Pick<FunctionCache, 'lookup' | 'assertReachable'>
  /** Asynchronous calls over JetStream (docs/async.md); without it they answer 503. */
  asyncCalls?: Pick<AsyncCalls, 'enqueue' | 'get' | 'deadLetters'>
  /** Told the name of a function just replaced, updated or removed (workers then drop its pre-started containers); must not throw. */
  functionChanged?: (name: string) => void
}
