/**
 * The floor of amp's own part: a worker whose runner starts no container and answers each call
 * with its input in upper case, as the benchmark's function does. HTTP to the listener, NATS to the
 * worker and back, HTTP answer: everything amp does for a call but the container.
 */
import {ContainerRunner, type RunResult, type RunSpec} from '../src/runtime/worker/container-runner.js'

export class UpperCaseRunner extends ContainerRunner {
  override async run(spec: RunSpec): Promise<RunResult> {
    const stdout = Buffer.from(Buffer.from(spec.input).toString('latin1').toUpperCase(), 'latin1')
    return {outcome: 'exited', exitCode: 0, stdout, stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0}
  }
}
