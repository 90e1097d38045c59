//! XVA archives as XAPI's `/export` writes them, and a strict reader that checks one.
//!
//! Writer: a tar stream with `ova.xml` first (an XML-RPC struct of `version` and `objects`, every ref rewritten
//! to an export-local `Ref:<n>`), then for each exported disk, in lexicographic order of its id, 1 MiB chunks
//! `Ref:<n>/%08d` each followed by `Ref:<n>/%08d.xxhash` (16 upper-case hex digits of XXH64, seed 0); all-zero
//! chunks are skipped except the first and the last; the archive ends with two zero blocks. Reader: the
//! importer's rules (`stream_vdi.ml recv_all_vdi`) applied strictly, used by tests to prove an XVA is valid.
//! Compression is applied by the caller around the writer.

use crate::db::{now_datetime, Db};
use crate::disk::SparseDisk;
use crate::schema::Fields;
use crate::value::{Value, NULL_REF};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

/// XVA chunk size.
pub const CHUNK: u64 = 1024 * 1024;

/// What one export will write.
pub struct XvaPlan {
    pub ova_xml: String,
    /// (export id, disk content, virtual size), sorted by id as strings.
    pub disks: Vec<(String, SparseDisk)>,
}

fn str_of(f: &Fields, k: &str) -> String {
    f.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn refs_of(f: &Fields, k: &str) -> Vec<String> {
    f.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn rewrite(v: &Value, ids: &HashMap<String, String>) -> Value {
    match v {
        Value::Str(s) if s.starts_with("OpaqueRef:") => {
            Value::str(ids.get(s).cloned().unwrap_or_else(|| NULL_REF.to_string()))
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| x.as_str().is_none_or(|s| !s.starts_with("OpaqueRef:") || ids.contains_key(s)))
                .map(|x| rewrite(x, ids))
                .collect(),
        ),
        Value::Map(m) => Value::Map(
            m.iter().filter(|(k, _)| !k.starts_with("OpaqueRef:")).map(|(k, x)| (k.clone(), rewrite(x, ids))).collect(),
        ),
        other => other.clone(),
    }
}

/// Plans the export of `vm`: which objects go into `ova.xml` and which disks are streamed.
pub fn plan(db: &Db, vm: &str, preserve_power_state: bool) -> XvaPlan {
    let Some(vm_rec) = db.get(vm) else {
        return XvaPlan { ova_xml: String::new(), disks: Vec::new() };
    };
    let mut objects: Vec<(&'static str, String)> = vec![("VM", vm.to_string())];
    let mut disk_vdis = Vec::new();
    for vbd in refs_of(vm_rec, "VBDs") {
        let Some(b) = db.get(&vbd) else { continue };
        objects.push(("VBD", vbd.clone()));
        let vdi = str_of(b, "VDI");
        if let Some(v) = db.get_of("VDI", &vdi) {
            let iso = db.get(&str_of(v, "SR")).is_some_and(|s| str_of(s, "content_type") == "iso");
            if str_of(b, "type") != "CD" && !iso {
                disk_vdis.push(vdi);
            }
        }
    }
    let suspend = str_of(vm_rec, "suspend_VDI");
    if preserve_power_state && db.get_of("VDI", &suspend).is_some() {
        disk_vdis.push(suspend);
    }
    for vif in refs_of(vm_rec, "VIFs") {
        if let Some(v) = db.get(&vif) {
            objects.push(("VIF", vif.clone()));
            let net = str_of(v, "network");
            if db.get(&net).is_some() && !objects.iter().any(|(_, r)| r == &net) {
                objects.push(("network", net));
            }
        }
    }
    for vdi in &disk_vdis {
        objects.push(("VDI", vdi.clone()));
        let sr = db.field_str(vdi, "SR");
        if db.get(&sr).is_some() && !objects.iter().any(|(_, r)| r == &sr) {
            objects.push(("SR", sr));
        }
    }
    for m in ["metrics", "guest_metrics"] {
        let r = str_of(vm_rec, m);
        if db.get(&r).is_some() {
            objects.push((if m == "metrics" { "VM_metrics" } else { "VM_guest_metrics" }, r));
        }
    }
    let ids: HashMap<String, String> =
        objects.iter().enumerate().map(|(i, (_, r))| (r.clone(), format!("Ref:{i}"))).collect();
    let mut objs = Vec::new();
    for (class, r) in &objects {
        let Some(rec) = db.get(r) else { continue };
        let mut snapshot: Vec<(String, Value)> = rec.iter().map(|(k, v)| (k.clone(), rewrite(v, &ids))).collect();
        if *class == "VM" && !preserve_power_state {
            for (k, v) in snapshot.iter_mut() {
                if k == "power_state" {
                    *v = Value::str("Halted");
                }
            }
        }
        objs.push(Value::Map(vec![
            ("class".into(), Value::str(*class)),
            ("id".into(), Value::str(ids[r].clone())),
            ("snapshot".into(), Value::Map(snapshot)),
        ]));
    }
    let pool_master = db.all("pool").next().map(|(_, p)| str_of(p, "master")).unwrap_or_default();
    let host = db.get(&pool_master).cloned().unwrap_or_default();
    let sv = host.get("software_version");
    let sv_str = |k: &str| sv.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
    let header = Value::Map(vec![
        (
            "version".into(),
            Value::Map(vec![
                ("hostname".into(), Value::str(str_of(&host, "hostname"))),
                ("date".into(), Value::str(now_datetime())),
                ("product_version".into(), Value::str(sv_str("product_version"))),
                ("product_brand".into(), Value::str(sv_str("product_brand"))),
                ("build_number".into(), Value::str(sv_str("build_number"))),
                ("xapi_major".into(), Value::Int(1)),
                ("xapi_minor".into(), Value::Int(20)),
                ("export_vsn".into(), Value::Int(2)),
            ]),
        ),
        ("objects".into(), Value::Array(objs)),
    ]);
    let mut disks: Vec<(String, SparseDisk)> =
        disk_vdis.iter().filter_map(|v| Some((ids.get(v)?.clone(), db.disks.get(v)?.clone()))).collect();
    disks.sort_by(|a, b| a.0.cmp(&b.0));
    XvaPlan { ova_xml: header.to_xml_string(), disks }
}

fn tar_header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o400);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// The checksum member's content for a chunk.
pub fn xxhash_hex(data: &[u8]) -> String {
    format!("{:016X}", xxhash_rust::xxh64::xxh64(data, 0))
}

/// Writes the whole XVA of `plan` to `out`.
pub fn write(plan: &XvaPlan, out: impl Write) -> io::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let mut tar = tar::Builder::new(out);
    tar.append(&tar_header("ova.xml", plan.ova_xml.len() as u64, now)?, plan.ova_xml.as_bytes())?;
    let mut buf = vec![0u8; CHUNK as usize];
    for (id, disk) in &plan.disks {
        let size = disk.size();
        let chunks = size.div_ceil(CHUNK).max(1);
        for n in 0..chunks {
            let off = n * CHUNK;
            let len = CHUNK.min(size.saturating_sub(off)) as usize;
            let first_or_last = n == 0 || n + 1 == chunks;
            if !first_or_last && !disk.range_nonzero(off, len as u64) {
                continue;
            }
            let data = &mut buf[..len];
            disk.read(off, data);
            if !first_or_last && data.iter().all(|&b| b == 0) {
                continue;
            }
            let name = format!("{id}/{n:08}");
            tar.append(&tar_header(&name, len as u64, 0)?, &data[..])?;
            let sum = xxhash_hex(data);
            tar.append(&tar_header(&format!("{name}.xxhash"), sum.len() as u64, 0)?, sum.as_bytes())?;
        }
    }
    tar.into_inner()?.flush()
}

/// A digest of a disk's content that ignores how zeros are stored: SHA-256 over (offset, bytes) of every
/// 1 MiB chunk that is not all zero, plus the size. Equal digests mean equal disks.
#[derive(Default)]
pub struct SparseDigest {
    hasher: Sha256,
}

impl SparseDigest {
    /// Feeds the chunk at `offset` (chunk-aligned, at most 1 MiB); all-zero chunks are ignored.
    pub fn chunk(&mut self, offset: u64, data: &[u8]) {
        if data.iter().any(|&b| b != 0) {
            self.hasher.update(offset.to_le_bytes());
            self.hasher.update((data.len() as u64).to_le_bytes());
            self.hasher.update(data);
        }
    }

    pub fn finish(self, size: u64) -> String {
        let mut h = self.hasher;
        h.update(size.to_le_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The [`SparseDigest`] of a disk held by the simulator.
pub fn disk_digest(disk: &SparseDisk) -> String {
    let mut d = SparseDigest::default();
    let mut buf = vec![0u8; CHUNK as usize];
    let size = disk.size();
    let mut off = 0;
    while off < size {
        let len = CHUNK.min(size - off) as usize;
        if disk.range_nonzero(off, len as u64) {
            disk.read(off, &mut buf[..len]);
            d.chunk(off, &buf[..len]);
        }
        off += CHUNK;
    }
    d.finish(size)
}

/// What a checked XVA contains.
#[derive(Debug)]
pub struct XvaContents {
    pub ova_xml: String,
    /// Disk id -> (virtual size from ova.xml, SparseDigest of the reassembled content).
    pub disks: BTreeMap<String, (u64, String)>,
    /// Disk id -> VDI uuid from ova.xml.
    pub disk_uuids: BTreeMap<String, String>,
    pub chunks: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads and checks an uncompressed XVA the way XAPI's importer does: `ova.xml` first, disks in order, chunk
/// suffixes strictly increasing, every chunk followed by a matching `.xxhash` (or `.checksum`), nothing beyond
/// each disk's virtual size.
pub fn read_and_check(input: impl Read) -> io::Result<XvaContents> {
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries()?;
    let mut first = entries.next().ok_or_else(|| bad("empty archive"))??;
    if first.path()?.to_string_lossy() != "ova.xml" {
        return Err(bad("first member is not ova.xml"));
    }
    let mut ova_xml = String::new();
    first.read_to_string(&mut ova_xml)?;
    drop(first);
    let header = crate::xmlrpc::parse_value_str(&ova_xml).map_err(bad)?;
    let objects = header.get("objects").and_then(Value::as_array).ok_or_else(|| bad("no objects"))?;
    let mut sizes = BTreeMap::new();
    let mut uuids = BTreeMap::new();
    let mut expected_disks = Vec::new();
    for o in objects {
        let class = o.get("class").and_then(Value::as_str).unwrap_or_default();
        let id = o.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        if class == "VDI" {
            let snap = o.get("snapshot").ok_or_else(|| bad("VDI without snapshot"))?;
            let size = snap.get("virtual_size").and_then(Value::as_i64).ok_or_else(|| bad("no virtual_size"))?;
            sizes.insert(id.clone(), size as u64);
            uuids.insert(id.clone(), snap.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string());
        }
        if class == "VBD" {
            let snap = o.get("snapshot").ok_or_else(|| bad("VBD without snapshot"))?;
            let vdi = snap.get("VDI").and_then(Value::as_str).unwrap_or_default().to_string();
            if snap.get("type").and_then(Value::as_str) != Some("CD") && vdi.starts_with("Ref:") {
                expected_disks.push(vdi);
            }
        }
    }
    expected_disks.sort();
    expected_disks.dedup();
    let mut disks = BTreeMap::new();
    let mut chunks = 0;
    let mut pending: Option<(String, u64, String, u64, SparseDigest, u64)> = None; // id, size, last, offset, digest, first_len
    let mut order = Vec::new();
    let mut last_hash_name: Option<(String, String)> = None;
    for entry in entries {
        let mut e = entry?;
        let name = e.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        if let Some((expect, sum)) = last_hash_name.take() {
            let ok = if name == format!("{expect}.xxhash") {
                String::from_utf8_lossy(&data) == sum
            } else if name == format!("{expect}.checksum") {
                true
            } else {
                return Err(bad(format!("chunk {expect} not followed by its checksum (found {name})")));
            };
            if !ok {
                return Err(bad(format!("checksum mismatch for {expect}")));
            }
            continue;
        }
        let (prefix, suffix) = name.split_once('/').ok_or_else(|| bad(format!("unexpected member {name}")))?;
        if pending.as_ref().map(|p| p.0.as_str()) != Some(prefix) {
            if let Some((id, size, _, offset, digest, _)) = pending.take() {
                if offset < size {
                    return Err(bad(format!("disk {id} ends at {offset}, before its size {size}")));
                }
                disks.insert(id, (size, digest.finish(size)));
            }
            let size = *sizes.get(prefix).ok_or_else(|| bad(format!("chunks for unknown disk {prefix}")))?;
            order.push(prefix.to_string());
            pending = Some((prefix.to_string(), size, "-1".into(), 0, SparseDigest::default(), 0));
        }
        let p = pending.as_mut().ok_or_else(|| bad("no disk"))?;
        let n: i64 = suffix.parse().map_err(|_| bad(format!("bad chunk name {name}")))?;
        let last: i64 = p.2.parse().unwrap_or(-1);
        if p.2 != "-1" && suffix <= p.2.as_str() {
            return Err(bad(format!("chunk {name} out of order")));
        }
        if p.5 == 0 {
            p.5 = data.len() as u64;
        }
        p.3 += (n - last - 1) as u64 * p.5;
        if p.3 >= p.1 && !data.is_empty() {
            return Err(bad(format!("chunk {name} beyond the disk size")));
        }
        p.4.chunk(p.3, &data);
        p.3 += data.len() as u64;
        p.2 = suffix.to_string();
        chunks += 1;
        last_hash_name = Some((name.clone(), xxhash_hex(&data)));
    }
    if let Some((expect, _)) = last_hash_name {
        return Err(bad(format!("archive ends before the checksum of {expect}")));
    }
    if let Some((id, size, _, offset, digest, _)) = pending.take() {
        if offset < size {
            return Err(bad(format!("disk {id} ends at {offset}, before its size {size}")));
        }
        disks.insert(id, (size, digest.finish(size)));
    }
    let mut sorted = order.clone();
    sorted.sort();
    if sorted != order {
        return Err(bad("disks are not in lexicographic order of their ids"));
    }
    if order != expected_disks {
        return Err(bad(format!("disks {order:?} differ from the VBDs' disks {expected_disks:?}")));
    }
    Ok(XvaContents { ova_xml, disks, disk_uuids: uuids, chunks })
}
