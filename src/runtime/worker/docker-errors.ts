/** Reading docker's own failures (not a function's) from what the docker CLI printed. */

// docker prints its own failures like these, and exits 125, 126 or 127.
const DOCKER_ERROR = /^(docker: .*|Error response from daemon: .*|Cannot connect to the Docker daemon.*|Unable to find image .*)$/m

/** One of docker's error lines as a reason: without its "docker: " prefix and its usage hint. */
export function dockerReason(line: string): string {
  return line.replace(/^docker: /, '').replace(/\.?\s*See 'docker run --help'\.?$/, '')
}

/** Tells a container's own exit code apart from docker failing to run it. */
export function dockerFailure(exitCode: number, stderr: string): string | undefined {
  if (exitCode < 125 || exitCode > 127) return undefined
  const own = dockerLines(stderr).filter((line) => !line.startsWith('Unable to find image'))
  if (own.length === 0) return exitCode === 125 && stderr.trim() === '' ? 'docker failed to run the container' : undefined
  return dockerReason(own[0])
}

/** docker's own lines in a CLI's stderr. */
export function dockerLines(stderr: string): string[] {
  return stderr.split('\n').map((line) => line.trim()).filter((line) => DOCKER_ERROR.test(line))
}
