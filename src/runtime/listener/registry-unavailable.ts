/**
 * The one error of an unreachable function registry, "function registry (etcd) unavailable: <why>",
 * with the why kept apart: the function cache reports the registry's failures again, and says the
 * prefix once rather than wrapping one such message in another.
 */
import {AmpError} from '../shared/errors.js'

export class RegistryUnavailableError extends AmpError {
  constructor(
    readonly reason: string,
    options: {suggestions?: string[]; cause?: unknown} = {},
  ) {
    super('registry_unavailable', `function registry (etcd) unavailable: ${reason}`, options)
  }
}

/** Why etcd failed, in one line: a RegistryUnavailableError's reason (without its prefix), else the error's message. */
export function etcdProblem(error: unknown): string {
  if (error instanceof RegistryUnavailableError) return error.reason
  // etcd3's circuit breaker, open after consecutive failures: cockatiel's words say nothing about etcd.
  if ((error as {isBrokenCircuitError?: unknown} | undefined)?.isBrokenCircuitError === true) return 'no answer to several attempts in a row'
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]
}
