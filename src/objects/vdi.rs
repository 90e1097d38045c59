//! The XO shapes of VDIs, VDI snapshots and SRs (XO's `xapi-object-to-xo` `vdi()` and `sr()`).

use super::schema::{Field, Ty};
use super::{common, current_operations, num, timestamp, Ctx};
use serde_json::{json, Map, Value};

pub fn map_vdi(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let snapshot = r.get("is_a_snapshot").and_then(Value::as_bool) == Some(true);
    let mut o = common(reference, r, if snapshot { "VDI-snapshot" } else { "VDI" }, ctx);
    o.insert("size".into(), num(r.get("virtual_size")));
    o.insert("usage".into(), num(r.get("physical_utilisation")));
    o.insert("VDI_type".into(), r.get("type").cloned().unwrap_or(Value::Null));
    o.insert("parent".into(), r.get("sm_config").and_then(|m| m.get("vhd-parent")).cloned().unwrap_or(Value::Null));
    o.insert("cbt_enabled".into(), r.get("cbt_enabled").cloned().unwrap_or(json!(false)));
    o.insert("missing".into(), r.get("missing").cloned().unwrap_or(json!(false)));
    o.insert("snapshots".into(), ctx.links(r.get("snapshots").unwrap_or(&Value::Null)));
    o.insert("current_operations".into(), current_operations(r, ctx));
    o.insert("other_config".into(), r.get("other_config").cloned().unwrap_or_else(|| json!({})));
    // The disk's format on storage that says it (`sm_config:image-format`, e.g. `vhd`, `qcow2`).
    o.insert(
        "image_format".into(),
        r.get("sm_config").and_then(|m| m.get("image-format")).cloned().unwrap_or(Value::Null),
    );
    o.insert("$SR".into(), ctx.link(r.get("SR").unwrap_or(&Value::Null)));
    o.insert("$VBDs".into(), ctx.links(r.get("VBDs").unwrap_or(&Value::Null)));
    if snapshot {
        o.insert("snapshot_time".into(), timestamp(r.get("snapshot_time")));
        o.insert("$snapshot_of".into(), ctx.link(r.get("snapshot_of").unwrap_or(&Value::Null)));
    } else {
        o.insert("chainPhysicalUsage".into(), json!(chain_usage(r, ctx)));
    }
    o
}

/// The physical usage of a VDI and of every VHD parent up its chain (`sm_config.vhd-parent`, a uuid), as XO sums
/// it; a parent that is not among the fetched records ends the chain.
fn chain_usage(r: &Value, ctx: &Ctx) -> i64 {
    let usage = |v: &Value| num(v.get("physical_utilisation")).as_i64().unwrap_or(0);
    let parent_of =
        |v: &Value| v.get("sm_config").and_then(|m| m.get("vhd-parent")).and_then(Value::as_str).map(str::to_string);
    let mut total = usage(r);
    let mut next = parent_of(r);
    let mut seen = 0;
    while let Some(uuid) = next.take() {
        seen += 1;
        let Some(parent) = ctx.records.values().find(|v| v.get("uuid").and_then(Value::as_str) == Some(uuid.as_str()))
        else {
            break;
        };
        total += usage(parent);
        next = parent_of(parent).filter(|_| seen < 1000);
    }
    total
}

pub fn map_sr(reference: &str, r: &Value, ctx: &Ctx) -> Map<String, Value> {
    let mut o = common(reference, r, "SR", ctx);
    let sr_type = r.get("type").and_then(Value::as_str).unwrap_or("");
    let shared = r.get("shared").and_then(Value::as_bool).unwrap_or(false);
    let thin = matches!(
        sr_type,
        "ext" | "nfs" | "file" | "smb" | "iso" | "cephfs" | "glusterfs" | "zfs" | "xfs" | "moosefs" | "largeblock"
    );
    let pbds = r.get("PBDs").and_then(Value::as_array).cloned().unwrap_or_default();
    let container = if shared || pbds.is_empty() {
        json!(ctx.pool_uuid)
    } else {
        ctx.get(&pbds[0]).map(|p| ctx.link(p.get("host").unwrap_or(&Value::Null))).unwrap_or(Value::Null)
    };
    o.insert("content_type".into(), r.get("content_type").cloned().unwrap_or(Value::Null));
    o.insert("SR_type".into(), json!(sr_type));
    o.insert("size".into(), num(r.get("physical_size")));
    o.insert("usage".into(), num(r.get("virtual_allocation")));
    o.insert("physical_usage".into(), num(r.get("physical_utilisation")));
    o.insert("shared".into(), json!(shared));
    o.insert("allocationStrategy".into(), json!(if thin { "thin" } else { "thick" }));
    let other = r.get("other_config").cloned().unwrap_or_else(|| json!({}));
    o.insert("inMaintenanceMode".into(), json!(other.get("xo:maintenanceState").is_some()));
    o.insert("VDIs".into(), ctx.links(r.get("VDIs").unwrap_or(&Value::Null)));
    o.insert("other_config".into(), other);
    o.insert("sm_config".into(), r.get("sm_config").cloned().unwrap_or_else(|| json!({})));
    o.insert("current_operations".into(), current_operations(r, ctx));
    o.insert("$PBDs".into(), ctx.links(&Value::Array(pbds)));
    o.insert("$container".into(), container);
    o
}

/// The fields [`map_vdi`] builds, for disks and their snapshots (see [`super::schema`]).
pub const VDI_FIELDS: &[Field] = &[
    ("size", Ty::Int),
    ("usage", Ty::Int),
    ("VDI_type", Ty::Str),
    ("parent", Ty::Str),
    ("cbt_enabled", Ty::Bool),
    ("missing", Ty::Bool),
    ("snapshots", Ty::Uuids),
    ("current_operations", Ty::StrMap),
    ("other_config", Ty::StrMap),
    ("image_format", Ty::Str),
    ("$SR", Ty::Uuid),
    ("$VBDs", Ty::Uuids),
    ("snapshot_time", Ty::Num),
    ("$snapshot_of", Ty::Uuid),
    ("chainPhysicalUsage", Ty::Int),
];

/// The fields [`map_sr`] builds (see [`super::schema`]).
pub const SR_FIELDS: &[Field] = &[
    ("content_type", Ty::Str),
    ("SR_type", Ty::Str),
    ("size", Ty::Int),
    ("usage", Ty::Int),
    ("physical_usage", Ty::Int),
    ("shared", Ty::Bool),
    ("allocationStrategy", Ty::OneOf(&["thin", "thick"])),
    ("inMaintenanceMode", Ty::Bool),
    ("VDIs", Ty::Uuids),
    ("other_config", Ty::StrMap),
    ("sm_config", Ty::StrMap),
    ("current_operations", Ty::StrMap),
    ("$PBDs", Ty::Uuids),
    ("$container", Ty::Uuid),
];
