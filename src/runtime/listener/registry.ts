import {Etcd3, type IKeyValue, type IOptions, STMConflictError} from 'etcd3'

import {checkUserPassword, type EtcdAuth, readTlsFiles, redactUrls, tlsProblem} from '../shared/credentials.js'
import {AmpError, isAmpError} from '../shared/errors.js'
import {applyPatch, type FunctionPatch, type NewFunction, type StoredFunction, storedFunction} from '../shared/function-spec.js'
import type {FunctionSource, FunctionWatch} from './function-cache.js'
import {etcdProblem, RegistryUnavailableError} from './registry-unavailable.js'

/** etcd key of a function: the JSON of its StoredFunction (with its environment's values). */
export const FUNCTION_PREFIX = '/amp/v1/functions/'
export const functionKey = (name: string): string => `${FUNCTION_PREFIX}${name}`

const CALL_DEADLINE_MS = 3000
// etcd3 retries a failed call up to 3 times, each with its own deadline: a hung etcd would take 9 s or more
// to fail. This bounds a whole operation, leaving room for one quick retry after a fast failure.
const OPERATION_DEADLINE_MS = 4000
/** Conflicting updates of one function retry this often before giving up (each retry is one etcd round trip or two). */
const UPDATE_RETRIES = 20

/** The function registry, stored in etcd. Every etcd failure becomes one `registry_unavailable` error. */
export class Registry implements FunctionSource {
  /** Finds why TLS fails, when it does (grpc only says "no connection"); set by connectWith. */
  private tlsProblem?: () => Promise<string | undefined>

  constructor(private readonly etcd: Etcd3, private readonly now: () => Date = () => new Date()) {}

  /** Use connectWith() for credentials and TLS. */
  static connect(hosts: string[], access: Pick<IOptions, 'auth' | 'credentials'> = {}): Registry {
    return new Registry(
      new Etcd3({
        hosts,
        ...access,
        dialTimeout: CALL_DEADLINE_MS,
        defaultCallOptions: (context) => (context.isStream ? {} : {deadline: Date.now() + CALL_DEADLINE_MS}),
      }),
    )
  }

  /** connect() with amp's etcd settings: user and password, TLS files (read here, so a bad path fails at once). */
  static async connectWith(hosts: string[], auth: EtcdAuth = {}): Promise<Registry> {
    checkUserPassword('etcd', auth)
    const tls = await readTlsFiles('etcd', auth.tls)
    const registry = Registry.connect(hosts, {
      ...(auth.user ? {auth: {username: auth.user, password: auth.password ?? ''}} : {}),
      // grpc takes a missing CA as "the system's CAs".
      ...(tls ? {credentials: {rootCertificate: tls.ca as Buffer, privateKey: tls.key, certChain: tls.cert}} : {}),
    })
    if (tls && hosts.length > 0) registry.tlsProblem = () => tlsProblem(hosts[0], tls)
    return registry
  }

  /**
   * Fails with `unauthorized` when etcd answers but refuses amp's credentials (or needs some), and
   * with `service_unavailable` when the TLS handshake fails: retrying would not help. etcd being
   * down is not an error here (false: no answer): the function API answers 503 until it is back.
   */
  async checkAccess(): Promise<boolean> {
    try {
      await this.guard(() => this.etcd.get(functionKey('-')).string())
      return true
    } catch (error) {
      const cause = (error as AmpError).cause as Error | undefined
      const reason = redactUrls(String(cause?.message ?? error)).split('\n')[0]
      if (/authenticat|permission denied|user name is empty|invalid auth token|auth.*not enabled/i.test(`${cause?.name} ${reason}`)) {
        throw new AmpError('unauthorized', `etcd refused amp's credentials: ${reason}`, {
          suggestions: ['check etcd-user and etcd-password (flags, AMP_ETCD_USER / AMP_ETCD_PASSWORD or the config file)'],
        })
      }
      const problem = await this.tlsProblem?.()
      if (problem) {
        throw new AmpError('service_unavailable', `cannot connect to etcd over TLS: ${redactUrls(problem)}`, {
          suggestions: ['check etcd-tls-ca (it must have signed etcd\'s certificate), etcd-tls-cert and etcd-tls-key, and use https:// etcd URLs'],
        })
      }
      return false
    }
  }

  async get(name: string): Promise<StoredFunction | undefined> {
    const value = await this.guard(() => this.etcd.get(functionKey(name)).string())
    return value === null ? undefined : parse(value)
  }

  async list(): Promise<StoredFunction[]> {
    const all = await this.guard(() => this.etcd.getAll().prefix(FUNCTION_PREFIX).strings())
    return Object.values(all)
      .map(parse)
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  /** Creates a function; with `replace`, overwrites an existing one (keeping its createdAt). */
  async put(
    spec: NewFunction,
    replace: boolean,
  ): Promise<{spec: StoredFunction; created: boolean}> {
    const key = functionKey(spec.name)
    const now = this.now().toISOString()
    const fresh: StoredFunction = {...spec, createdAt: now, updatedAt: now}
    // Create only if absent, in one transaction, so two racing creates cannot both win.
    const txn = await this.guard(() =>
      this.etcd.if(key, 'Create', '==', 0).then(this.etcd.put(key).value(JSON.stringify(fresh))).commit(),
    )
    if (txn.succeeded) return {spec: fresh, created: true}
    if (!replace) {
      throw new AmpError('function_exists', `function ${spec.name} already exists`, {
        suggestions: [`replace it with: amp function create ${spec.name} ${spec.image} --replace`],
      })
    }
    const previous = await this.get(spec.name)
    const replaced: StoredFunction = {...spec, createdAt: previous?.createdAt ?? now, updatedAt: now}
    await this.guard(() => this.etcd.put(key).value(JSON.stringify(replaced)).exec())
    return {spec: replaced, created: false}
  }

  /**
   * Changes some settings of a function in place and returns it as stored, or undefined if there is
   * none. Read and write are one etcd software transaction: it commits only if the key's mod
   * revision is still the one read, and is retried otherwise, so concurrent updates of different
   * settings are all kept and an update never brings back a function removed meanwhile.
   */
  async update(name: string, patch: FunctionPatch): Promise<StoredFunction | undefined> {
    const key = functionKey(name)
    const outcome = await this.guard(async () => {
      try {
        return await this.etcd.stm({retries: UPDATE_RETRIES}).transact(async (tx) => {
          const value = await tx.get(key).string()
          if (value === null) return undefined
          const updated = applyPatch(parse(value), patch, this.now().toISOString())
          await tx.put(key).value(JSON.stringify(updated))
          return updated
        })
      } catch (error) {
        if (error instanceof STMConflictError) return 'conflict' as const
        if (isAmpError(error)) return error // the patch itself is bad (an environment grown too large): a 400
        throw error
      }
    })
    if (isAmpError(outcome)) throw outcome
    if (outcome === 'conflict') {
      throw new AmpError('registry_unavailable', `function ${name} is being changed by too many clients at once; try again`)
    }
    return outcome
  }

  /** Removes a function and returns what it was, or undefined if there was none. */
  async remove(name: string): Promise<StoredFunction | undefined> {
    const previous = await this.guard(() => this.etcd.delete().key(functionKey(name)).getPrevious())
    return previous.length === 0 ? undefined : parse(previous[0].value.toString('utf8'))
  }

  /** Every function and the etcd revision they were read at (for FunctionCache). */
  async snapshot(): Promise<{specs: StoredFunction[]; revision: string}> {
    const answer = await this.guard(() => this.etcd.getAll().prefix(FUNCTION_PREFIX).exec())
    return {specs: answer.kvs.map((kv) => parse(kv.value.toString('utf8'))), revision: String(answer.header.revision)}
  }

  /**
   * Follows changes to functions after `revision` with an etcd watch. A broken stream or a cancelled
   * watch (e.g. the revision was compacted) calls onLost once and ends the watch: the caller
   * re-reads everything rather than trusting a resumed stream.
   */
  follow(revision: string, on: FunctionWatch): {stop(): void} {
    const watcher = this.etcd.watch().prefix(FUNCTION_PREFIX).startRevision(String(BigInt(revision) + 1n)).watcher()
    let ended = false
    const end = (error?: Error) => {
      if (ended) return
      ended = true
      watcher.removeAllListeners()
      watcher.on('error', () => {}) // a late cancellation error must not be unhandled
      watcher.cancel().catch(() => {})
      if (error) on.lost(error)
    }
    const nameOf = (kv: IKeyValue) => kv.key.toString('utf8').slice(FUNCTION_PREFIX.length)
    watcher
      .on('put', (kv) => {
        try {
          on.put(parse(kv.value.toString('utf8')))
        } catch (error) {
          end(error as Error)
        }
      })
      .on('delete', (kv) => on.delete(nameOf(kv)))
      .on('disconnected', (error: Error) => end(error))
      .on('error', (error: Error) => end(error))
    return {stop: () => end()}
  }

  /** True when etcd answers. */
  async ping(): Promise<boolean> {
    try {
      await this.guard(() => this.etcd.maintenance.status())
      return true
    } catch {
      return false
    }
  }

  close(): void {
    this.etcd.close()
  }

  private async guard<T>(operation: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${OPERATION_DEADLINE_MS / 1000} s`)), OPERATION_DEADLINE_MS)
    })
    const running = operation()
    running.catch(() => {}) // it may still fail after the deadline; that failure has been reported already
    try {
      return await Promise.race([running, deadline])
    } catch (error) {
      throw new RegistryUnavailableError(etcdProblem(error), {cause: error})
    } finally {
      clearTimeout(timer)
    }
  }
}

function parse(value: string): StoredFunction {
  return storedFunction(JSON.parse(value))
}
