/**
 * Every other suite, in parallel worker processes: most of their time is spent waiting on docker,
 * NATS and etcd, each suite on its own servers and free ports. AMP_TEST_JOBS sets how many at once.
 */
module.exports = {
  ...require('../../.mocharc.json'),
  spec: ['test/**/*.test.ts'],
  exclude: require('./serial-suites.cjs'),
  parallel: true,
  jobs: Number(process.env.AMP_TEST_JOBS || 4),
}
