// Xen Orchestra's own XAPI client (npm xen-api with @xen-orchestra/xapi, pinned in package-lock.json) against
// xapi-sim, used the way xo-server uses it: connect, fill the object cache, follow event.from, and run the
// transfer helpers to completion. Each helper waits for what XAPI makes it wait for:
// - `barrier()` writes an `xo:barrier:*` key into pool.other_config and waits until event.from shows it;
// - `VDI_importContent` / `SR_importVdi` probe the handler with an empty PUT, stream the body, then wait for the
//   import task (watched through event.from) to succeed, and remove `xo:import:*` from the VDI's other_config;
// - `VDI_exportContent` / `VM_export` wait for the first bytes, and the task completes when the stream ends;
// - `VDI_destroy`, `VM_snapshot`, `VM_destroy` run `Async.*` calls and wait for their tasks.
// Usage: node xo_client.mjs <simulator url> <json-rpc|xml-rpc>. Prints one line per step, then "XO client OK".
import { Xapi } from '@xen-orchestra/xapi'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import assert from 'node:assert/strict'

const [url, transport] = process.argv.slice(2)
const STEP_LIMIT_MS = 20e3

async function step(name, fn) {
  const started = Date.now()
  let timer
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: not done after ${STEP_LIMIT_MS} ms`)), STEP_LIMIT_MS)
  })
  try {
    const result = await Promise.race([fn(), limit])
    console.log(`ok ${name} (${Date.now() - started} ms)`)
    return result
  } finally {
    clearTimeout(timer)
  }
}

const sha = buf => createHash('sha256').update(buf).digest('hex')

async function readAll(stream) {
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks)
}

function sized(buf) {
  const stream = Readable.from([buf])
  stream.length = buf.length
  return stream
}

async function simStats() {
  const res = await fetch(new URL('/_sim/stats', url))
  return res.json()
}

async function simExpireSessions() {
  const res = await fetch(new URL('/_sim/sessions/expire', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  })
  assert.equal(res.status, 200)
}

// Counts that must be back where they started once the client is done.
const countsOf = s => ({ vms: s.vms, vm_snapshots: s.vm_snapshots, vdis: s.vdis, tasks: s.tasks, sessions: s.sessions })
const before = countsOf(await simStats())

const xapi = new Xapi({ url, auth: { user: 'root', password: 'xapi-sim' }, allowUnauthorized: true, transport })
// The client's event loop reports failures on the console and retries; any of them fails the check.
const warnings = []
const warn = console.warn
console.warn = (...args) => {
  warnings.push(args)
  warn(...args)
}
process.on('unhandledRejection', error => {
  console.log('unhandled rejection', error)
  process.exit(2)
})

await step('connect', () => xapi.connect())
await step('objects fetched', () => xapi.objectsFetched)
const all = () => Object.values(xapi.objects.all)
for (const type of ['pool', 'host', 'VM', 'VBD', 'VDI', 'SR', 'PBD', 'network', 'VIF', 'PIF', 'message']) {
  assert.ok(all().some(o => o.$type === type), `no ${type} in the cache`)
}
assert.equal(xapi.pool.name_label, 'Demo pool')
const sr = xapi.getObject(xapi.pool.default_SR)
assert.equal(sr.$type, 'SR')

// event.from: the barrier's xo: key arrives through events, and its removal does too.
await step('barrier', () => xapi.barrier())
const barrierKeys = o => Object.keys(o.other_config).filter(k => k.startsWith('xo:barrier:'))
const known = new Set(barrierKeys(xapi.pool))
const pool = await step('barrier returning the pool', () => xapi.barrier(xapi.pool.$ref))
const [key] = barrierKeys(pool).filter(k => !known.has(k))
assert.ok(key, 'the barrier key was seen through event.from')
await step('barrier key removed (seen through events)', async () => {
  // The cached pool changes only through event.from.
  while (key in xapi.pool.other_config) await new Promise(r => setTimeout(r, 20))
})
await step('xo: key written and removed', async () => {
  await xapi.pool.update_other_config('xo:check', 'on')
  assert.equal((await xapi.barrier(xapi.pool.$ref)).other_config['xo:check'], 'on')
  await xapi.pool.update_other_config('xo:check', null)
  assert.equal((await xapi.barrier(xapi.pool.$ref)).other_config['xo:check'], undefined)
})

// SESSION_INVALID: calls log in again, and the event loop starts over.
await simExpireSessions()
await step('call after SESSION_INVALID (re-login)', async () => assert.ok((await xapi.call('VM.get_all')).length > 0))
await step('events after SESSION_INVALID', () => xapi.barrier())

// Disks: create, import raw, export raw and VHD, import VHD and raw onto the SR.
const size = 4 << 20
const raw = Buffer.alloc(size)
for (let i = 0; i < size; i += 65536) raw.write(`xo-client block ${i}`, i)
const vdiRef = await step('VDI_create', () => xapi.VDI_create({ name_label: 'xo-client', SR: sr.$ref, virtual_size: size }))
await step('VDI_importContent raw', () => xapi.VDI_importContent(vdiRef, sized(raw), { format: 'raw' }))
const imported = await step('VDI other_config clean', async () => {
  let vdi = await xapi.barrier(vdiRef)
  while (Object.keys(vdi.other_config).some(k => k.startsWith('xo:import:'))) vdi = await xapi.barrier(vdiRef)
  return vdi
})
assert.deepEqual(imported.other_config, {})
const rawBack = await step('VDI_exportContent raw', async () => readAll(await xapi.VDI_exportContent(vdiRef, { format: 'raw' })))
assert.equal(sha(rawBack), sha(raw), 'raw export reads back what was imported')
const vhd = await step('VDI_exportContent vhd', async () => readAll(await xapi.VDI_exportContent(vdiRef, { format: 'vhd' })))
assert.equal(vhd.subarray(vhd.length - 512, vhd.length - 504).toString(), 'conectix', 'a VHD footer ends the export')
const fromVhd = await step('SR_importVdi vhd', () => xapi.SR_importVdi(sr.$ref, sized(vhd), { format: 'vhd' }))
const fromRaw = await step('SR_importVdi raw', () => xapi.SR_importVdi(sr.$ref, sized(raw), { format: 'raw' }))
for (const [name, ref] of [['vhd', fromVhd], ['raw', fromRaw]]) {
  const back = await step(`read back the ${name} import`, async () =>
    readAll(await xapi.VDI_exportContent(ref, { format: 'raw' }))
  )
  assert.equal(sha(back), sha(raw), `the ${name} import holds the data`)
}

// VMs: a halted one in each compression, a running one through VM_snapshot.
const vms = all().filter(o => o.$type === 'VM' && !o.is_a_template && !o.is_a_snapshot && !o.is_control_domain)
const halted = vms.find(v => v.power_state === 'Halted' && !('export' in v.blocked_operations) && v.VBDs.length > 0)
const running = vms.find(v => v.power_state === 'Running' && !('export' in v.blocked_operations))
assert.ok(halted && running, 'the demo pool has a halted and a running VM')
const magic = { false: [0x6f, 0x76, 0x61], gzip: [0x1f, 0x8b], zstd: [0x28, 0xb5, 0x2f, 0xfd] }
for (const [vm, compress] of [[halted, false], [halted, 'gzip'], [halted, 'zstd'], [running, 'zstd']]) {
  const name = `VM_export ${vm.power_state} ${compress || 'plain'}`
  const response = await step(name, () => xapi.VM_export(vm.$ref, { compress }))
  const body = await step(`${name}: stream`, () => readAll(response.body))
  const expected = magic[compress]
  assert.deepEqual([...body.subarray(0, expected.length)], expected, `${name} starts with its magic`)
  await step(`${name}: task`, () => response.task)
}

for (const ref of [vdiRef, fromVhd, fromRaw]) await step('VDI_destroy', () => xapi.VDI_destroy(ref))
await step('final barrier', () => xapi.barrier())
await step('disconnect', () => xapi.disconnect())

// The running VM's export snapshot is destroyed when its stream ends; tasks are destroyed when settled.
await step('simulator counts back to the start', async () => {
  for (;;) {
    const after = countsOf(await simStats())
    if (JSON.stringify(after) === JSON.stringify(before)) return
    await new Promise(r => setTimeout(r, 100))
  }
})
assert.deepEqual(warnings, [], 'the client warned')
console.log('XO client OK')
