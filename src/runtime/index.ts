/**
 * amp as a library (package.json "exports" "."): the client of a listener's HTTP API, and the
 * function settings and errors it speaks in. Loads neither NATS, etcd nor execa. The daemons are
 * subpaths: amp/listener, amp/worker and amp/stack (what `amp up` runs).
 */
export {AmpClient, type AmpClientOptions, type CallOutcome, type InvokeResult, type StreamOutcome} from './client/client.js'
export {AmpError, EXIT, type ErrorCode, isAmpError} from './shared/errors.js'
export type {FunctionInput, FunctionPatch, FunctionSpec} from './shared/function-spec.js'
