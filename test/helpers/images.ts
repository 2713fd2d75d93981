/**
 * The function images the integration tests run, built FROM scratch with Debian's static busybox
 * (no registry needed). Each image is labelled with a hash of its build context; when the label
 * matches, nothing is built, so calling ensureTestImages() in every suite's `before` is cheap.
 */
import {createHash} from 'node:crypto'
import {copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {DOCKER, requireDocker} from './services.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/images/', import.meta.url))
const BUSYBOX = process.env.AMP_TEST_BUSYBOX ?? '/usr/bin/busybox'
const HASH_LABEL = 'amp-test.context-hash'

/** Image references by behaviour; see test/fixtures/images/<name>/Dockerfile. */
export const TEST_IMAGES = {
  /** stdin -> stdout, byte for byte */
  cat: 'amp-test/cat:1',
  /** stdin -> stdout, "boom" on stderr, exit 3 */
  fail: 'amp-test/fail:1',
  /** stdin -> stdout, "log: <input>" on stderr */
  stderr: 'amp-test/stderr:1',
  /** reads stdin, sleeps 2 s, then writes it to stdout (pre-started or not) */
  slow: 'amp-test/slow:1',
  /** sleeps 300 s, ignores stdin */
  sleep: 'amp-test/sleep:1',
  /** the demo: "input <text>" on stderr, Title Case on stdout */
  title: 'amp-test/title:1',
  /** "first" on stderr, 2 s later "second", then stdin -> stdout */
  drip: 'amp-test/drip:1',
  /** runs its input as a shell script (busybox sh -s) */
  sh: 'amp-test/sh:1',
  /** stdin -> stdout in upper case (busybox tr a-z A-Z): the benchmark's function */
  upper: 'amp-test/upper:1',
  /** stdin -> stdout, Debian's dynamically linked cat with its glibc, no busybox */
  glibc: 'amp-test/glibc:1',
  /** stdin -> stdout in upper case, a dynamically linked musl program (like Alpine's), no busybox */
  musl: 'amp-test/musl:1',
  /** WORKDIR /work, USER 1234:5678, ENV GREETING, ENTRYPOINT + CMD: prints "<pwd> <uid>:<gid> <GREETING> <args>", then cat */
  whoami: 'amp-test/whoami:1',
  /** no ENTRYPOINT and no CMD: docker refuses to run it */
  nocmd: 'amp-test/nocmd:1',
} as const

export type TestImage = keyof typeof TEST_IMAGES

let ensured: Promise<typeof TEST_IMAGES> | undefined

export function ensureTestImages(): Promise<typeof TEST_IMAGES> {
  ensured ??= buildAll()
  // A failed build must not be cached: the next suite should try again and show the error.
  ensured.catch(() => (ensured = undefined))
  return ensured
}

async function buildAll(): Promise<typeof TEST_IMAGES> {
  await requireDocker()
  let busybox: Buffer
  try {
    busybox = readFileSync(BUSYBOX)
  } catch {
    throw new Error(`${BUSYBOX} is missing: install Debian's busybox-static (scripts/setup.sh does) to build the test images`)
  }
  const busyboxHash = createHash('sha256').update(busybox).digest('hex')
  await Promise.all((Object.keys(TEST_IMAGES) as TestImage[]).map((name) => ensureImage(name, busyboxHash)))
  return TEST_IMAGES
}

function contextHash(dir: string, busyboxHash: string): string {
  const hash = createHash('sha256').update(busyboxHash)
  for (const file of readdirSync(dir).sort()) hash.update(file).update('\0').update(readFileSync(path.join(dir, file)))
  for (const [source] of hostFiles(dir)) hash.update(source).update('\0').update(readFileSync(source))
  return hash.digest('hex').slice(0, 16)
}

/** Files of this machine an image is built with (its `host-files`: one `SOURCE NAME-IN-CONTEXT` a line). */
function hostFiles(dir: string): Array<[string, string]> {
  let text: string
  try {
    text = readFileSync(path.join(dir, 'host-files'), 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => line.trim().split(/\s+/) as [string, string])
}

/** Puts what the Dockerfile copies beside it: busybox, the host files, and C sources compiled with musl-gcc. */
async function prepareContext(source: string, context: string): Promise<void> {
  copyFileSync(BUSYBOX, path.join(context, 'busybox'))
  for (const [file, name] of hostFiles(source)) {
    try {
      copyFileSync(file, path.join(context, name))
    } catch {
      throw new Error(`${file} is missing: the test image ${path.basename(source)} is built from it`)
    }
  }
  for (const file of readdirSync(source).filter((name) => name.endsWith('.c'))) {
    const out = path.join(context, file.slice(0, -2))
    const built = await execa('musl-gcc', ['-Os', '-Wall', '-o', out, path.join(source, file)], {reject: false})
    if (built.failed) {
      const why = (built as {code?: string}).code === 'ENOENT' ? 'musl-gcc is missing: install Debian\'s musl-tools (scripts/setup.sh does)' : String(built.stderr).trim()
      throw new Error(`cannot build the test image ${path.basename(source)}: ${why}`)
    }
  }
}

async function ensureImage(name: TestImage, busyboxHash: string): Promise<void> {
  const tag = TEST_IMAGES[name]
  const source = path.join(FIXTURES, name)
  const hash = contextHash(source, busyboxHash)
  const current = await execa(DOCKER, ['image', 'inspect', '--format', `{{index .Config.Labels "${HASH_LABEL}"}}`, tag], {
    reject: false,
  })
  if (current.exitCode === 0 && String(current.stdout).trim() === hash) return

  const context = mkdtempSync(path.join(tmpdir(), `amp-test-image-${name}-`))
  try {
    cpSync(source, context, {recursive: true})
    await prepareContext(source, context)
    const result = await execa(DOCKER, ['build', '--quiet', '--label', `${HASH_LABEL}=${hash}`, '-t', tag, context], {
      reject: false,
      env: {DOCKER_CLI_HINTS: 'false'},
    })
    if (result.exitCode !== 0) {
      throw new Error(`docker build of ${tag} failed: ${String(result.stderr).trim() || result.message}`)
    }
  } finally {
    rmSync(context, {recursive: true, force: true})
  }
}
