import {expect} from 'chai'

import {AmpError} from '../../src/runtime/shared/errors.js'

/** Awaits a promise that must reject with an AmpError, and returns that error for more checks. */
export async function ampError(promise: Promise<unknown>): Promise<AmpError> {
  try {
    await promise
  } catch (error) {
    expect(error).to.be.instanceOf(AmpError)
    return error as AmpError
  }
  throw new Error('expected an AmpError, but it resolved')
}

/** Runs `fn`, which must throw an AmpError bad_request (exit 2, HTTP 400), and returns that error. */
export function badRequest(fn: () => unknown): AmpError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(AmpError)
    expect((error as AmpError).code).to.equal('bad_request')
    return error as AmpError
  }
  throw new Error('expected a bad_request AmpError, but nothing was thrown')
}
