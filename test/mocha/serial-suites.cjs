/**
 * Suites `npm test` runs one at a time, before the others run in parallel (test/mocha/parallel.cjs):
 * built-cli rebuilds dist/ (which the others read the runner binary from); the fault, chaos, burst and
 * overload suites kill processes, stop servers or saturate workers and then count what happened;
 * the benchmarks at CI size load the machine on purpose. Anything else must keep to its own servers,
 * ports, function names and containers, so it can run next to other suites.
 */
module.exports = [
  'test/commands/built-cli.integration.test.ts',
  'test/runtime/async-chaos.integration.test.ts',
  'test/runtime/overload.integration.test.ts',
  'test/runtime/burst.integration.test.ts',
  'test/runtime/nats-outage.integration.test.ts',
  'test/runtime/daemons.integration.test.ts',
  'test/runtime/worker/worker-faults.integration.test.ts',
  'test/runtime/listener/listener-faults.integration.test.ts',
  'test/bench/*.test.ts',
]
