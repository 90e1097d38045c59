// Stand-in for @vates/parse-duration, which the registry this project installs from does not carry.
// @xen-orchestra/xapi calls it once, in its constructor, on a duration such as '5 min'.
'use strict'
const ms = require('ms')
exports.parseDuration = value => {
  const n = typeof value === 'number' ? value : ms(value)
  if (typeof n !== 'number' || Number.isNaN(n)) throw new TypeError('invalid duration: ' + value)
  return n
}
