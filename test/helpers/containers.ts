/** The containers amp starts, as `docker ps` lists them by filter (amp labels each: amp.call, amp.function, amp.worker...). */
import {execa} from 'execa'
import {DOCKER} from './services.js'
import {waitUntil} from './wait.js'

/**
 * Ids of the containers matching a `docker ps` filter (`label=amp.call=ID`, `id=ID`), or all of several,
 * stopped ones too unless `running`.
 */
export async function containers(filter: string | string[], options: {running?: boolean} = {}): Promise<string[]> {
  const filters = [filter].flat().flatMap((one) => ['--filter', one])
  const {stdout} = await execa(DOCKER, ['ps', ...(options.running ? [] : ['--all']), '--quiet', ...filters])
  return stdout.split('\n').filter(Boolean)
}

/**
 * Containers matching `filter` but for the idle pre-started ones of live workers (running, labelled
 * amp.prestarted=true): those stay by design until their worker stops or they go idle. A used
 * pre-started container has exited by the time its call is answered, so a leaked one still shows.
 */
export async function containersBesidesIdle(filter: string): Promise<string[]> {
  const [all, idle] = await Promise.all([containers(filter), idlePrestarted(filter)])
  return all.filter((id) => !idle.includes(id))
}

async function idlePrestarted(filter: string): Promise<string[]> {
  const {stdout} = await execa(DOCKER, ['ps', '--quiet', '--filter', filter, '--filter', 'label=amp.prestarted=true'])
  return stdout.split('\n').filter(Boolean)
}

/** Containers amp started for one call (by label), running or not. */
export function containersOfCall(callId: string): Promise<string[]> {
  return containers(`label=amp.call=${callId}`)
}

/** Waits until no container of the call exists (docker removes --rm containers just after they exit). */
export async function expectNoContainer(callId: string, withinMs = 5000): Promise<void> {
  let left: string[] = []
  await waitUntil(() => `no container left by call ${callId} (left: ${left.join(', ')})`, async () => {
    left = await containersOfCall(callId)
    return left.length === 0
  }, withinMs)
}
