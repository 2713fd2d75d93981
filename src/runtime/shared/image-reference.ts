/**
 * Docker's image reference grammar (github.com/distribution/reference, as `docker run` reads it):
 * [host[:port]/]path[:tag][@digest]. An image docker would refuse is refused when the function is
 * created or changed, with the rule it breaks, rather than on every call as a 502 from docker.
 */

/** Amp's bound on the whole reference; docker's own is on the repository name (MAX_REPOSITORY_LENGTH). */
export const MAX_IMAGE_LENGTH = 255
/** Docker's RepositoryNameTotalLengthMax: the path as docker names it, "library/" included. */
export const MAX_REPOSITORY_LENGTH = 255

const HOST_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const HOST = new RegExp(`^${HOST_LABEL}(?:\\.${HOST_LABEL})*(?::[0-9]+)?$`)
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^\w[\w.-]{0,127}$/
/** The digests docker checks (go-digest): the algorithm and the length of its lowercase hex. */
const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/
/** Every character any reference may hold; what starts with '-' would be read by docker as a flag. */
const ALPHABET = /^[\w.+:/@-]+$/

/** The rules, each as the end of the one-line message that names it. */
export const IMAGE_RULES = {
  shape: 'expected [registry/]name[:tag][@digest], e.g. busybox:1.36 or ghcr.io/acme/fn:1',
  length: `the reference may hold at most ${MAX_IMAGE_LENGTH} characters`,
  digest: 'a digest is algorithm:hex, e.g. sha256:<64 lowercase hex digits>',
  tag: "the tag may hold at most 128 characters of letters, digits, _ . - (at least one, not starting with . or -)",
  empty: "the repository name has an empty part (no '//', and no '/' at its start or end)",
  host: 'the registry host must be a host name or address with an optional :port, e.g. registry.example.com:5000',
  lowercase: 'the repository name must be lowercase',
  component: "each part of the repository name is lowercase letters and digits, separated by '.', '_', '__' or '-'",
  repositoryLength: `the repository name may hold at most ${MAX_REPOSITORY_LENGTH} characters (docker counts "library/" before a one-part Docker Hub name)`,
} as const

/** The rule `image` breaks, undefined when docker takes it. */
export function imageReferenceProblem(image: string): string | undefined {
  if (image.length > MAX_IMAGE_LENGTH) return IMAGE_RULES.length
  if (!ALPHABET.test(image) || image.startsWith('-')) return IMAGE_RULES.shape
  const at = image.indexOf('@')
  if (at >= 0 && !DIGEST.test(image.slice(at + 1))) return IMAGE_RULES.digest
  const named = at >= 0 ? image.slice(0, at) : image
  // A ':' after the last '/' starts the tag; one before it is a registry's port.
  const colon = named.lastIndexOf(':')
  const hasTag = colon > named.lastIndexOf('/')
  if (hasTag && !TAG.test(named.slice(colon + 1))) return IMAGE_RULES.tag
  return nameProblem(hasTag ? named.slice(0, colon) : named)
}

function nameProblem(name: string): string | undefined {
  const parts = name.split('/')
  if (parts.includes('')) return IMAGE_RULES.empty
  // Docker's rule: the first part is a registry only when it has a '.' or a ':', or is localhost.
  const host = parts.length > 1 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost') ? parts[0] : undefined
  if (host !== undefined && !HOST.test(host)) return IMAGE_RULES.host
  const path = host === undefined ? parts : parts.slice(1)
  for (const part of path) {
    if (!PATH_COMPONENT.test(part)) return PATH_COMPONENT.test(part.toLowerCase()) ? IMAGE_RULES.lowercase : IMAGE_RULES.component
  }
  const onDockerHub = host === undefined || host === 'docker.io' || host === 'index.docker.io'
  const repository = (onDockerHub && path.length === 1 ? 'library/' : '') + path.join('/')
  return repository.length > MAX_REPOSITORY_LENGTH ? IMAGE_RULES.repositoryLength : undefined
}
