'use strict'
/**
 * oclif's plugin loader asks minimatch whether each dependency's name matches each `oclif.plugins`
 * entry, and minimatch parses the pattern into a RegExp on every call: run cold, that is several ms
 * of every command's start (bench:cli). amp's entries are package names, and a name without glob
 * characters matches only itself. In the bundle only (scripts/bundle.ts), oclif's plugin loader gets
 * this instead; any other pattern still goes to minimatch, bundled and loaded on first use.
 */
/** Characters that can make a minimatch pattern more than the string itself (globs, extglobs, braces, escapes, negation, comments). */
const MAGIC = /[*?[\]{}()!+@\\#]/

function minimatch(name, pattern, options) {
  if (options === undefined && typeof pattern === 'string' && !MAGIC.test(pattern.replace(/^@(?!\()/, ''))) return name === pattern
  return require('minimatch').minimatch(name, pattern, options)
}

module.exports = {minimatch}
