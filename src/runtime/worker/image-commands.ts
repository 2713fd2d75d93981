/**
 * What the in-container runner must start for an image: its ENTRYPOINT and CMD, read with
 * `docker image inspect` (docs/runner.md). The runner replaces the image's entrypoint, so the worker
 * passes that command on itself, and runs the image by its id, so the command read and the image
 * run are always the same image. Results are kept per image reference until Docker reports an image
 * change (a pull, tag, untag, load, import or delete: `invalidate`).
 */
import {execa} from 'execa'

import type {PullPolicy} from '../shared/config.js'

export interface ImageCommand {
  /** The image id (sha256:...), which the container is run from. */
  id: string
  /** ENTRYPOINT followed by CMD. */
  argv: string[]
}

/** The image's command, or why the runner cannot run it (the call then runs as it would without the runner). */
export type ImageResolution = {command: ImageCommand; unusable?: undefined} | {command?: undefined; unusable: string}

export interface ImageCommandsOptions {
  docker: string
  pull: PullPolicy
  exec?: typeof execa
  now?: () => number
}

const IMAGE_ID = /^sha256:[0-9a-f]{64}$/
/** Beyond this the command is not something docker would run either (its own limit is the kernel's ARG_MAX). */
const MAX_COMMAND_BYTES = 128 * 1024
/** An image that could not be read (missing: `docker run` pulls it) is read again after this long, or at the next image event. */
const UNUSABLE_MS = 10_000
/** While image events are not followed, a command read is trusted this long only. */
const UNFOLLOWED_MS = 5000

interface Entry {
  at: number
  value: Promise<ImageResolution>
  /** Once the read is over. */
  settled?: ImageResolution
}

export class ImageCommands {
  private readonly cache = new Map<string, Entry>()
  private readonly exec: typeof execa
  private readonly now: () => number
  /** Set by the owner while Docker's image events are followed: only then is a command kept until the next event. */
  following = false

  constructor(private readonly options: ImageCommandsOptions) {
    this.exec = options.exec ?? execa
    this.now = options.now ?? Date.now
  }

  resolve(image: string): Promise<ImageResolution> {
    // --pull always: every container starts from a fresh pull, so nothing read before can be kept.
    if (this.options.pull === 'always') return this.read(image, true)
    const entry = this.cache.get(image)
    if (entry && this.fresh(entry)) return entry.value
    const fresh: Entry = {at: this.now(), value: this.read(image, false)}
    void fresh.value.then((settled) => (fresh.settled = settled))
    this.cache.set(image, fresh)
    return fresh.value
  }

  /** An image changed on the engine: every command is read again. */
  invalidate(): void {
    this.cache.clear()
  }

  /** A read still in flight is shared by every caller; a settled one is kept as long as it can be trusted. */
  private fresh(entry: Entry): boolean {
    const age = this.now() - entry.at
    if (entry.settled?.unusable !== undefined && age >= UNUSABLE_MS) return false
    return entry.settled === undefined || this.following || age < UNFOLLOWED_MS
  }

  private async read(image: string, pull: boolean): Promise<ImageResolution> {
    if (pull) {
      const pulled = await this.exec(this.options.docker, ['pull', '--quiet', '--', image], {reject: false, stdin: 'ignore', cleanup: false})
      if (pulled.failed) return {unusable: `docker pull failed: ${firstLine(pulled.stderr) || pulled.shortMessage}`}
    }
    const format = '{{json .Id}}\t{{json .Config.Entrypoint}}\t{{json .Config.Cmd}}\t{{json .Os}}'
    const result = await this.exec(this.options.docker, ['image', 'inspect', '--format', format, '--', image], {reject: false, stdin: 'ignore', cleanup: false})
    if (result.failed) return {unusable: `docker image inspect failed: ${firstLine(result.stderr) || result.shortMessage}`}
    return parseInspect(String(result.stdout))
  }
}

/** The image's command from the inspect line above, checked: docker would refuse what this refuses too. */
export function parseInspect(line: string): ImageResolution {
  let fields: unknown[]
  try {
    fields = line.trim().split('\t').map((field) => JSON.parse(field) as unknown)
  } catch {
    return {unusable: 'docker image inspect gave an answer amp cannot read'}
  }
  const [id, entrypoint, cmd, os] = fields
  if (typeof id !== 'string' || !IMAGE_ID.test(id)) return {unusable: 'docker image inspect gave no image id'}
  if (os !== undefined && os !== null && os !== 'linux') return {unusable: `the image is for ${String(os)}, the runner for linux`}
  const given = [...strings(entrypoint), ...strings(cmd)]
  if (!given.every((arg): arg is string => typeof arg === 'string' && !arg.includes('\0'))) {
    return {unusable: 'the image command is not a list of strings'}
  }
  const argv: string[] = given
  if (argv.length === 0) return {unusable: 'the image has no ENTRYPOINT or CMD'}
  if (argv.reduce((size, arg) => size + Buffer.byteLength(arg) + 1, 0) > MAX_COMMAND_BYTES) return {unusable: 'the image command is too long'}
  return {command: {id, argv}}
}

function strings(value: unknown): unknown[] {
  if (value === null || value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

function firstLine(text: unknown): string {
  return String(text ?? '').split('\n').find((line) => line.trim())?.trim() ?? ''
}
