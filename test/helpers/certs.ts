/**
 * Throwaway TLS certificates for integration tests, made with the openssl CLI: a CA, and a
 * certificate for 127.0.0.1/localhost signed by it that serves as server and client certificate
 * (no extended key usage, so both are allowed).
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {execa} from 'execa'

import {findExecutable} from '../../src/runtime/ops/servers.js'

export interface TestCerts {
  dir: string
  /** The CA's certificate. */
  ca: string
  /** Certificate and key for 127.0.0.1 and localhost, signed by the CA. */
  cert: string
  key: string
  remove(): void
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** Makes a CA and a certificate it signs in a temp dir; fails with what to do when openssl is missing. */
export async function makeCerts(name = 'amp-test'): Promise<TestCerts> {
  if (!(await findExecutable('openssl'))) throw new Error('openssl is not installed: run scripts/setup.sh (apt-get install openssl)')
  const dir = mkdtempSync(path.join(tmpdir(), `${name}-certs-`))
  const file = (base: string) => path.join(dir, base)
  const openssl = (args: string[]) => execa('openssl', args, {cwd: dir})
  try {
    await openssl(['req', '-x509', ...KEY, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${name} CA`])
    await openssl(['req', ...KEY, '-keyout', 'cert.key', '-out', 'cert.csr', '-subj', '/CN=localhost'])
    writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    await openssl(['x509', '-req', '-in', 'cert.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'cert.pem', '-days', '2', '-extfile', 'ext.cnf'])
  } catch (error) {
    rmSync(dir, {recursive: true, force: true})
    throw error
  }
  return {dir, ca: file('ca.pem'), cert: file('cert.pem'), key: file('cert.key'), remove: () => rmSync(dir, {recursive: true, force: true})}
}
