/**
 * A fake systemd notification socket: a unix datagram socket (Node cannot open one, so a few lines
 * of python3 do) that records every message systemd-notify sends, for sd_notify tests.
 */
import {execa, type ResultPromise} from 'execa'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

const RECEIVER = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(65536)  # fds passed along (BARRIER=1) are closed by the kernel, which releases the sender
    print(json.dumps(data.decode()), flush=True)
`

export interface NotifySocket {
  path: string
  /** Messages received so far, e.g. "READY=1\\nSTATUS=...". */
  messages: string[]
  /** Resolves with the first message matching, or rejects after withinMs. */
  waitFor(match: RegExp, withinMs?: number): Promise<string>
  close(): Promise<void>
}

export async function startNotifySocket(): Promise<NotifySocket> {
  const dir = mkdtempSync(path.join(tmpdir(), 'amp-test-notify-'))
  const socketPath = path.join(dir, 'notify.sock')
  const child: ResultPromise = execa('python3', ['-c', RECEIVER, socketPath], {reject: false, buffer: false, stdin: 'ignore'})
  const messages: string[] = []
  const listeners = new Set<() => void>()
  let pending = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString()
      let newline
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline)
        pending = pending.slice(newline + 1)
        if (line === 'bound') resolve()
        else messages.push(JSON.parse(line) as string)
      }
      for (const listener of listeners) listener()
    })
    void child.then((result) => reject(new Error(`python3 notify receiver exited: ${result.shortMessage}`)))
  })
  return {
    path: socketPath,
    messages,
    waitFor(match, withinMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find((message) => match.test(message))
          if (found === undefined) return
          clearTimeout(timer)
          listeners.delete(check)
          resolve(found)
        }
        const timer = setTimeout(() => {
          listeners.delete(check)
          reject(new Error(`no notification matching ${match} within ${withinMs} ms; got ${JSON.stringify(messages)}`))
        }, withinMs)
        listeners.add(check)
        check()
      })
    },
    async close() {
      child.kill()
      await child
      rmSync(dir, {recursive: true, force: true})
    },
  }
}
