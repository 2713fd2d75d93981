/**
 * Every token, credential and TLS file setting as flags would give it, each with its own value, and
 * the NatsAuth/EtcdAuth the daemons should get from them: for the tests of the options functions.
 */
export const GIVEN_TOKENS = {token: 'api-token', 'invoke-token': 'call-token'}
export const GIVEN_NATS_CREDENTIALS = {
  'nats-user': 'nu',
  'nats-password': 'np',
  'nats-token': 'nt',
  'nats-creds': '/n.creds',
  'nats-tls-ca': '/n-ca.pem',
  'nats-tls-cert': '/n-cert.pem',
  'nats-tls-key': '/n-key.pem',
}
export const GIVEN_ETCD_CREDENTIALS = {
  'etcd-user': 'eu',
  'etcd-password': 'ep',
  'etcd-tls-ca': '/e-ca.pem',
  'etcd-tls-cert': '/e-cert.pem',
  'etcd-tls-key': '/e-key.pem',
}

export const EXPECTED_AUTH = {token: 'api-token', invokeToken: 'call-token'}
export const EXPECTED_NATS_AUTH = {user: 'nu', password: 'np', token: 'nt', creds: '/n.creds', tls: {ca: '/n-ca.pem', cert: '/n-cert.pem', key: '/n-key.pem'}}
export const EXPECTED_ETCD_AUTH = {user: 'eu', password: 'ep', tls: {ca: '/e-ca.pem', cert: '/e-cert.pem', key: '/e-key.pem'}}

/** Nothing set: every field there, each undefined. */
const NO_TLS = {ca: undefined, cert: undefined, key: undefined}
export const NO_AUTH = {token: undefined, invokeToken: undefined}
export const NO_NATS_AUTH = {user: undefined, password: undefined, token: undefined, creds: undefined, tls: NO_TLS}
export const NO_ETCD_AUTH = {user: undefined, password: undefined, tls: NO_TLS}
