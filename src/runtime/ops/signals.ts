/**
 * Resolves with the first SIGINT or SIGTERM, then removes its handlers: a second Ctrl-C during
 * shutdown gets Node's default behaviour and ends the process at once.
 */
export function waitForShutdownSignal(signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      for (const name of signals) process.off(name, onSignal)
      resolve(signal)
    }
    for (const name of signals) process.on(name, onSignal)
  })
}
