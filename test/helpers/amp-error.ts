import {expect} from 'chai'

import {AmpError} from '../../src/runtime/errors.js'

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
