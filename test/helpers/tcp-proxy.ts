/**
 * A TCP proxy to cut one client off a server while others still reach it: cut() closes every
 * connection and refuses new ones, restore() accepts again on the same port.
 */
import {connect, createServer, type Server, type Socket} from 'node:net'
import type {AddressInfo} from 'node:net'

export interface TcpProxy {
  /** The proxy's address as a URL with the target's scheme, e.g. http://127.0.0.1:PORT. */
  url: string
  cut(): Promise<void>
  restore(): Promise<void>
  close(): Promise<void>
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const to = new URL(target)
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect(Number(to.port), to.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
      socket.on('error', () => {})
    }
    client.pipe(upstream).pipe(client)
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  const listen = (port: number) => new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  await listen(0)
  const port = (server.address() as AddressInfo).port
  let listening = true
  const cut = async () => {
    if (!listening) return
    listening = false
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    await closed
  }
  return {
    url: `${to.protocol}//127.0.0.1:${port}`,
    cut,
    async restore() {
      if (listening) return
      await listen(port)
      listening = true
    },
    close: cut,
  }
}
