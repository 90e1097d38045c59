// Stand-in for @vates/task, which the registry this project installs from does not carry. Only modules that
// the XO-client test does not exercise (rolling pool operations, NBD/CBT disk streams) use it: any use fails.
'use strict'
const missing = name => () => {
  throw new Error(`@vates/task ${name}() is not available in this test (its package is not on the registry)`)
}
exports.Task = class Task {}
for (const name of ['run', 'warning', 'info', 'set', 'wrap', 'wrapFn']) exports.Task[name] = missing(name)
