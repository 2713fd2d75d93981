/** The containers amp starts, as `docker ps` lists them by filter (amp labels each: amp.call, amp.function, amp.worker...). */
import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {execa} from 'execa'
import {DOCKER} from './services.js'

/** Ids of the containers matching a `docker ps` filter (`label=amp.call=ID`, `id=ID`), stopped ones too unless `running`. */
export async function containers(filter: string, options: {running?: boolean} = {}): Promise<string[]> {
  const {stdout} = await execa(DOCKER, ['ps', ...(options.running ? [] : ['--all']), '--quiet', '--filter', filter])
  return stdout.split('\n').filter(Boolean)
}

/** Containers amp started for one call (by label), running or not. */
export function containersOfCall(callId: string): Promise<string[]> {
  return containers(`label=amp.call=${callId}`)
}

/** Waits until no container of the call exists (docker removes --rm containers just after they exit). */
export async function expectNoContainer(callId: string, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs
  let left = await containersOfCall(callId)
  while (left.length > 0 && Date.now() < until) {
    await sleep(100)
    left = await containersOfCall(callId)
  }
  expect(left, `containers left by call ${callId}`).to.deep.equal([])
}
