/**
 * What bin/run.js loads: oclif's execute. `npm run build` bundles this file and each command with
 * @oclif/core and the CLI's own code (scripts/bundle.ts), so a command starts from a few files.
 */
export {execute} from '@oclif/core/execute'
