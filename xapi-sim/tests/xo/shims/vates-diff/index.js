// Stand-in for @vates/diff, a dependency of vhd-lib that the registry this project installs from does not carry.
// The XO-client test only loads vhd-lib's VHD footer reader, which does not use it: loading it is an error.
'use strict'
throw new Error('@vates/diff is not available in this test (its package is not on the registry)')
