/**
 * The wings of src/runtime (docs/architecture.md), checked by `npm run lint`: listener/, worker/
 * and client/ each import only shared/ and themselves; ops/ composes listener/ and worker/ (amp up)
 * and nothing in src/runtime imports it; shared/ imports only itself; only worker/ and ops/ run
 * programs (execa), so a listener or a CLI command never loads it; the CLI client loads no NATS or
 * etcd either.
 */
const wing = (name) => `^src/runtime/${name}/`
const forbid = (name, from, to, comment) => ({name, comment, severity: 'error', from: {path: from}, to: {path: to}})

module.exports = {
  forbidden: [
    forbid('listener-wing', wing('listener'), '^src/runtime/(worker|client|ops)/', 'the listener imports only shared/ and itself'),
    forbid('worker-wing', wing('worker'), '^src/runtime/(listener|client|ops)/', 'the worker imports only shared/ and itself'),
    forbid('client-wing', wing('client'), '^src/runtime/(listener|worker|ops)/', 'the CLI client imports only shared/ and itself'),
    forbid('shared-wing', wing('shared'), '^src/runtime/(listener|worker|client|ops)/', 'shared/ is what the wings share: it imports none of them'),
    forbid('ops-wing', wing('ops'), '^src/runtime/client/', 'ops/ composes the daemons, not the CLI client'),
    {
      name: 'execa-only-where-programs-run',
      comment: 'the listener, the CLI client and shared/ never load execa, not even through another module',
      severity: 'error',
      from: {path: '^src/runtime/(listener|client|shared)/'},
      to: {path: 'node_modules/execa/', reachable: true},
    },
    {
      name: 'client-loads-no-daemon-library',
      comment: 'the CLI client and the package entry (src/runtime/index.ts) load neither NATS, etcd nor execa',
      severity: 'error',
      from: {path: '^src/runtime/(client/|index[.]ts$)'},
      to: {path: 'node_modules/(@nats-io|etcd3|execa)/', reachable: true},
    },
    {
      name: 'no-cycles-between-wings',
      comment: 'a wing that imports another is not imported back by it',
      severity: 'error',
      from: {path: '^src/runtime/([^/]+)/'},
      to: {circular: true, pathNot: '^src/runtime/$1/'},
    },
  ],
  options: {
    doNotFollow: {path: 'node_modules'},
    tsConfig: {fileName: 'tsconfig.json'},
    tsPreCompilationDeps: true,
  },
}
