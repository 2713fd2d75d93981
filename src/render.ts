/** Small helpers for the human output of commands (never used for --json). */
import {once} from 'node:events'

import type {CallResult} from './runtime/shared/http-contract.js'

/** "2025-01-31 14:05:09Z": UTC, to the second. */
export function formatTime(iso: string): string {
  const time = new Date(iso)
  return Number.isNaN(time.getTime()) ? iso : `${time.toISOString().slice(0, 19).replace('T', ' ')}Z`
}

/** Rows as columns separated by two spaces, each padded to its widest cell; no trailing spaces. */
export function formatTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd())
}

/**
 * A call's result as `amp function invoke` prints it: the function's stderr and stdout byte for
 * byte, amp's notes after them (through `note`, a line on stderr), and the function's exit code as
 * amp's (process.exitCode, so buffered output is flushed first). Under --json only the exit code is set.
 */
export async function renderResult(result: CallResult, options: {json: boolean; verbose: boolean; note: (line: string) => void}): Promise<void> {
  if (!options.json) {
    await writeBytes(process.stderr, result.stderr)
    await writeBytes(process.stdout, result.stdout)
    if (result.stderrTruncated) {
      // On a line of its own, even if the cut log ends mid-line.
      const newline = result.stderr.length > 0 && result.stderr.at(-1) !== 0x0a ? '\n' : ''
      options.note(`${newline}amp: the function's stderr was cut to its first ${result.stderr.length} bytes (call ${result.callId})`)
    }
    if (options.verbose) {
      options.note(`amp: call ${result.callId} ran on worker ${result.worker} in ${result.durationMs}ms and exited ${result.exitCode}`)
    }
  }
  if (result.exitCode !== 0) process.exitCode = result.exitCode
}

/**
 * A function's output, raw: the one thing commands write without the base command's helpers (they
 * print text lines). Waits until the stream takes more, at the pace of a terminal or a pipe.
 */
export async function writeBytes(stream: NodeJS.WriteStream, bytes: Uint8Array): Promise<void> {
  if (!stream.write(bytes)) await once(stream, 'drain')
}
