/** An AmpClient on an undici MockAgent that refuses real connections, fresh for each test. */
import {MockAgent} from 'undici'

import {AmpClient} from '../../src/runtime/client/client.js'

export const MOCK_SERVER = 'http://amp.test:4242'

export function useMockClient(): {agent: () => MockAgent; client: () => AmpClient; pool: () => ReturnType<MockAgent['get']>} {
  let agent: MockAgent
  let client: AmpClient
  beforeEach(() => {
    agent = new MockAgent()
    agent.disableNetConnect()
    client = new AmpClient({server: MOCK_SERVER, dispatcher: agent})
  })
  afterEach(async () => {
    await agent.close()
  })
  return {agent: () => agent, client: () => client, pool: () => agent.get(MOCK_SERVER)}
}
