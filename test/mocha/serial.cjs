/** The suites that run alone (serial-suites.cjs), one after another. */
module.exports = {...require('../../.mocharc.json'), spec: require('./serial-suites.cjs')}
