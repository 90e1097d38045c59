//! Pools to simulate: the demo pool and generated pools of N VMs.
//!
//! The demo pool has 2 hosts (each with its control domain), an ISO SR, a shared NFS SR and a host-local LVM SR,
//! a network with a PIF per host (and a second, unconfigured NIC on its own network), about ten VMs in every power state (a unicode name, tags, a `[NOSNAP]` disk,
//! blocked operations, a 100 GiB disk holding 10 MiB), snapshots, templates and messages. Disk contents are
//! synthetic and deterministic. `--vms N` adds N small generated VMs. The API rules live in `api`.

use crate::api;
use crate::db::{now_datetime, Db};
use crate::disk::{SparseDisk, Synthetic};
use crate::schema::Fields;
use crate::sim::{Role, User};
use crate::value::Value;

const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

fn f<const N: usize>(items: [(&str, Value); N]) -> Fields {
    items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What was built, for printing and for tests.
pub struct Pool {
    pub pool: String,
    pub hosts: Vec<String>,
    pub iso_sr: String,
    pub shared_sr: String,
    pub local_sr: String,
    pub network: String,
}

/// Users of every simulated pool: `root` (local superuser), `admin` (an external pool-admin subject) and
/// `auditor` (an external read-only subject). Creates the `subject` and `role` records.
pub fn users(db: &mut Db, root_password: &str) -> Vec<User> {
    let admin_role = db.create(
        "role",
        f([("name_label", Value::str("pool-admin")), ("name_description", Value::str("Pool Administrator"))]),
    );
    let ro_role =
        db.create("role", f([("name_label", Value::str("read-only")), ("name_description", Value::str("Read Only"))]));
    let admin_subject = db.create(
        "subject",
        f([
            ("subject_identifier", Value::str("S-1-5-21-1000")),
            ("other_config", Value::map([("subject-name", "admin"), ("subject-is-group", "false")])),
            ("roles", Value::strs([admin_role])),
        ]),
    );
    let ro_subject = db.create(
        "subject",
        f([
            ("subject_identifier", Value::str("S-1-5-21-1001")),
            ("other_config", Value::map([("subject-name", "auditor"), ("subject-is-group", "false")])),
            ("roles", Value::strs([ro_role])),
        ]),
    );
    vec![
        User {
            name: "root".into(),
            password: root_password.into(),
            role: Role::PoolAdmin,
            local_superuser: true,
            subject: crate::value::NULL_REF.into(),
        },
        User {
            name: "admin".into(),
            password: "admin-password".into(),
            role: Role::PoolAdmin,
            local_superuser: false,
            subject: admin_subject,
        },
        User {
            name: "auditor".into(),
            password: "auditor-password".into(),
            role: Role::ReadOnly,
            local_superuser: false,
            subject: ro_subject,
        },
    ]
}

/// Hosts, SRs, the network and the pool itself.
pub fn infrastructure(db: &mut Db) -> Pool {
    let network = db.create(
        "network",
        f([
            ("name_label", Value::str("Pool-wide network associated with eth0")),
            ("bridge", Value::str("xenbr0")),
            ("MTU", Value::Int(1500)),
            ("managed", Value::Bool(true)),
            ("other_config", Value::map([("automatic", "true")])),
        ]),
    );
    // A second NIC per host, unconfigured, on its own pool-wide network (what a bond is made of).
    let network1 = db.create(
        "network",
        f([
            ("name_label", Value::str("Pool-wide network associated with eth1")),
            ("bridge", Value::str("xenbr1")),
            ("MTU", Value::Int(1500)),
            ("managed", Value::Bool(true)),
            ("other_config", Value::map([("automatic", "true")])),
        ]),
    );
    let iso_sr = db.create(
        "SR",
        f([
            ("name_label", Value::str("ISO library")),
            ("type", Value::str("iso")),
            ("content_type", Value::str("iso")),
            ("shared", Value::Bool(true)),
            ("physical_size", Value::Int(200 * GIB)),
        ]),
    );
    let shared_sr = db.create(
        "SR",
        f([
            ("name_label", Value::str("Shared NFS storage")),
            ("name_description", Value::str("NFS SR [192.0.2.50:/srv/xcp]")),
            ("type", Value::str("nfs")),
            ("content_type", Value::str("user")),
            ("shared", Value::Bool(true)),
            ("physical_size", Value::Int(4096 * GIB)),
            ("sm_config", Value::map([("devserial", "nfs")])),
            ("allowed_operations", Value::strs(["vdi_create", "vdi_destroy", "scan"])),
        ]),
    );
    let local_sr = db.create(
        "SR",
        f([
            ("name_label", Value::str("Local storage")),
            ("type", Value::str("lvm")),
            ("content_type", Value::str("user")),
            ("shared", Value::Bool(false)),
            ("physical_size", Value::Int(500 * GIB)),
            ("allowed_operations", Value::strs(["vdi_create", "vdi_destroy", "scan"])),
        ]),
    );
    let mut hosts = Vec::new();
    for i in 1..=2 {
        let metrics = db.create(
            "host_metrics",
            f([
                ("memory_total", Value::Int(64 * GIB)),
                ("memory_free", Value::Int(40 * GIB)),
                ("live", Value::Bool(true)),
                ("last_updated", Value::DateTime(now_datetime())),
            ]),
        );
        let host = db.create(
            "host",
            f([
                ("name_label", Value::str(format!("xcp-host{i}"))),
                ("name_description", Value::str("Default install")),
                ("hostname", Value::str(format!("xcp-host{i}"))),
                ("address", Value::str(format!("192.0.2.1{i}"))),
                ("enabled", Value::Bool(true)),
                ("metrics", Value::str(metrics)),
                ("API_version_major", Value::Int(2)),
                ("API_version_minor", Value::Int(21)),
                ("API_version_vendor", Value::str("XenSource")),
                ("edition", Value::str("xcp-ng")),
                (
                    "software_version",
                    Value::map([
                        ("product_version", "8.3.0"),
                        ("product_version_text", "8.3"),
                        ("product_brand", "XCP-ng"),
                        ("platform_name", "XCP"),
                        ("build_number", "cloud"),
                        ("xapi", "25.6"),
                        ("xen", "4.17.5-8"),
                        ("linux", "4.19.0+1"),
                        ("platform_version", "3.4.0"),
                        ("xcp-ng:main", "Base Pack, version 8.3.0"),
                    ]),
                ),
                (
                    "cpu_info",
                    Value::map([
                        ("cpu_count", "16"),
                        ("socket_count", "2"),
                        ("vendor", "GenuineIntel"),
                        ("modelname", "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz"),
                        ("speed", "2100.000"),
                    ]),
                ),
                (
                    "license_params",
                    Value::map([
                        ("restrict_zstd_export", "false"),
                        ("sku_type", "free"),
                        ("expiry", "20380119T03:14:07Z"),
                    ]),
                ),
                (
                    "capabilities",
                    Value::strs(["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"]),
                ),
                ("chipset_info", Value::map([("iommu", "true")])),
                ("bios_strings", Value::map([("bios-vendor", "Xen"), ("system-manufacturer", "Xen")])),
                ("iscsi_iqn", Value::str(format!("iqn.2026-01.lan.example:xcp-host{i}"))),
                // Host 2 can be powered on remotely (Wake-on-LAN), the master cannot.
                ("power_on_mode", Value::str(if i == 2 { "wake-on-lan" } else { "" })),
                (
                    "other_config",
                    Value::map([
                        ("iscsi_iqn", "iqn.2026-01.lan.example"),
                        ("boot_time", "1764000000.0"),
                        ("agent_start_time", "1764000042.0"),
                        ("rpm_patch_installation_time", "1763990000.0"),
                    ]),
                ),
                ("allowed_operations", Value::strs(["provision", "evacuate", "reboot", "shutdown"])),
            ]),
        );
        // eth0: the management interface, with a static address; eth1: no address.
        let management = [
            ("ip_configuration_mode", Value::str("Static")),
            ("IP", Value::str(format!("192.0.2.1{i}"))),
            ("netmask", Value::str("255.255.255.0")),
            ("gateway", Value::str("192.0.2.1")),
            ("DNS", Value::str("192.0.2.2")),
            ("management", Value::Bool(true)),
        ];
        nic(db, &host, &network, "eth0", &format!("0c:c4:7a:00:00:0{i}"), &management);
        nic(
            db,
            &host,
            &network1,
            "eth1",
            &format!("0c:c4:7a:00:01:0{i}"),
            &[("ip_configuration_mode", Value::str("None"))],
        );
        // Control domain.
        let dom0_metrics =
            db.create("VM_metrics", f([("memory_actual", Value::Int(4 * GIB)), ("VCPUs_number", Value::Int(8))]));
        let dom0 = db.create(
            "VM",
            f([
                ("name_label", Value::str(format!("Control domain on host: xcp-host{i}"))),
                ("name_description", Value::str("The domain which manages physical devices and manages other domains")),
                ("is_control_domain", Value::Bool(true)),
                ("power_state", Value::str("Running")),
                ("resident_on", Value::str(host.clone())),
                ("memory_static_max", Value::Int(4 * GIB)),
                ("memory_dynamic_max", Value::Int(4 * GIB)),
                ("memory_dynamic_min", Value::Int(4 * GIB)),
                ("memory_static_min", Value::Int(4 * GIB)),
                ("VCPUs_max", Value::Int(8)),
                ("VCPUs_at_startup", Value::Int(8)),
                ("domid", Value::Int(0)),
                ("domain_type", Value::str("pv")),
                ("metrics", Value::str(dom0_metrics)),
            ]),
        );
        db.set(&host, "control_domain", Value::str(dom0.clone()));
        db.set_add(&host, "resident_VMs", &dom0);
        for sr in [&iso_sr, &shared_sr] {
            pbd(db, &host, sr);
        }
        if i == 2 {
            pbd(db, &host, &local_sr);
        }
        hosts.push(host);
    }
    devices(db, &hosts);
    let pool = db.create(
        "pool",
        f([
            ("name_label", Value::str("Demo pool")),
            ("name_description", Value::str("Simulated XCP-ng pool")),
            ("master", Value::str(hosts[0].clone())),
            ("default_SR", Value::str(shared_sr.clone())),
            ("suspend_image_SR", Value::str(shared_sr.clone())),
            ("crash_dump_SR", Value::str(shared_sr.clone())),
            ("restrictions", Value::map([("restrict_zstd_export", "false"), ("restrict_vtpm", "false")])),
            ("cpu_info", Value::map([("cpu_count", "32"), ("socket_count", "4"), ("vendor", "GenuineIntel")])),
            ("migration_compression", Value::Bool(false)),
            // XAPI's default (`ocaml/idl/datamodel_pool.ml`).
            ("ha_reboot_vm_on_internal_shutdown", Value::Bool(true)),
            ("tags", Value::strs(["demo"])),
        ]),
    );
    Pool { pool, hosts, iso_sr, shared_sr, local_sr, network }
}

/// The storage drivers (`SM`) an XCP-ng 8.3 host reports for the SR types of the demo pool, and each host's PCI
/// devices: a NIC and its on-board VGA, which XAPI also records as a `PGPU` (the system display device, in a
/// `GPU_group` of its model; `ocaml/xapi/xapi_pgpu.ml`, `update_gpus`, makes one per display device).
fn devices(db: &mut Db, hosts: &[String]) {
    for (ty, name, desc, file, features) in [
        ("nfs", "NFS VHD", "SR plugin which stores disks as VHD files on a remote NFS filesystem", "NFSSR", 14),
        (
            "ext",
            "Local EXT3 VHD",
            "SR plugin which represents disks as VHD files stored on a local EXT3 filesystem",
            "EXTSR",
            14,
        ),
        ("iso", "ISO", "Handles CD images stored as files in iso format", "ISOSR", 4),
        (
            "lvm",
            "Local LVM",
            "SR plugin which represents disks as VHD volumes on a local LVM volume group",
            "LVMSR",
            14,
        ),
    ] {
        let names = [
            "SR_PROBE",
            "SR_UPDATE",
            "VDI_CREATE",
            "VDI_DELETE",
            "VDI_ATTACH",
            "VDI_DETACH",
            "VDI_SNAPSHOT",
            "VDI_CLONE",
            "VDI_RESIZE",
            "VDI_INTRODUCE",
            "VDI_MIRROR",
            "VDI_GENERATE_CONFIG",
            "THIN_PROVISIONING",
            "VDI_UPDATE",
        ];
        let feature_map: Vec<(String, Value)> =
            names.iter().take(features).map(|n| (n.to_string(), Value::Int(1))).collect();
        db.create(
            "SM",
            f([
                ("name_label", Value::str(name)),
                ("name_description", Value::str(desc)),
                ("type", Value::str(ty)),
                ("vendor", Value::str("Citrix Systems Inc")),
                ("copyright", Value::str("(C) 2008 Citrix Systems Inc")),
                ("version", Value::str("1.0")),
                ("required_api_version", Value::str("1.0")),
                ("configuration", Value::map([("location", "local or remote path")])),
                ("capabilities", Value::strs(names.iter().take(features).copied())),
                ("features", Value::Map(feature_map)),
                ("driver_filename", Value::str(format!("/opt/xensource/sm/{file}"))),
                ("supported_image_formats", Value::strs(["vhd", "raw"])),
            ]),
        );
    }
    let group = db.create(
        "GPU_group",
        f([
            ("name_label", Value::str("Group of Matrox Electronics Systems Ltd. Integrated Matrox G200eW3 GPUs")),
            ("GPU_types", Value::strs(["0102:1024"])),
            ("allocation_algorithm", Value::str("depth_first")),
        ]),
    );
    for (i, host) in hosts.iter().enumerate() {
        let pci = |db: &mut Db, class: &str, vendor: &str, device: &str, id: &str, driver: &str| {
            db.create(
                "PCI",
                f([
                    ("class_name", Value::str(class)),
                    ("vendor_name", Value::str(vendor)),
                    ("device_name", Value::str(device)),
                    ("host", Value::str(host.clone())),
                    ("pci_id", Value::str(id)),
                    ("driver_name", Value::str(driver)),
                ]),
            )
        };
        let nic = pci(
            db,
            "Ethernet controller",
            "Intel Corporation",
            "Ethernet Controller X710 for 10GbE SFP+",
            "0000:3b:00.0",
            "i40e",
        );
        let vga = pci(
            db,
            "VGA compatible controller",
            "Matrox Electronics Systems Ltd.",
            "Integrated Matrox G200eW3 Graphics Controller",
            "0000:03:00.0",
            "mgag200",
        );
        let pgpu = db.create(
            "PGPU",
            f([
                ("PCI", Value::str(vga.clone())),
                ("GPU_group", Value::str(group.clone())),
                ("host", Value::str(host.clone())),
                ("dom0_access", Value::str("enabled")),
                ("is_system_display_device", Value::Bool(true)),
                ("other_config", Value::map([("index", i.to_string().as_str())])),
            ]),
        );
        db.set_add(&group, "PGPUs", &pgpu);
        db.set_add(host, "PCIs", &nic);
        db.set_add(host, "PCIs", &vga);
        db.set_add(host, "PGPUs", &pgpu);
        // The host's TLS certificate, as XAPI records the one it serves (`ocaml/xapi/certificates.ml`,
        // `Db_util.add_cert`: type `host`, its validity and SHA-256 fingerprint; `datamodel_certificate.ml`).
        let fingerprint: Vec<String> =
            (0..32u8).map(|b| format!("{:02X}", b.wrapping_mul(7).wrapping_add(i as u8))).collect();
        let cert = db.create(
            "Certificate",
            f([
                ("type", Value::str("host")),
                ("host", Value::str(host.clone())),
                ("not_before", Value::DateTime("20250601T10:00:00Z".into())),
                ("not_after", Value::DateTime("20350530T10:00:00Z".into())),
                ("fingerprint", Value::str(fingerprint.join(":"))),
            ]),
        );
        db.set_add(host, "certificates", &cert);
    }
}

/// A physical NIC of `host` on `network`, plugged, with its metrics; `extra` fields on top.
fn nic(db: &mut Db, host: &str, network: &str, device: &str, mac: &str, extra: &[(&str, Value)]) {
    let metrics = db.create(
        "PIF_metrics",
        f([
            ("carrier", Value::Bool(true)),
            ("device_name", Value::str("Ethernet Controller X710")),
            ("vendor_name", Value::str("Intel Corporation")),
            ("speed", Value::Int(10000)),
            ("duplex", Value::Bool(true)),
            ("last_updated", Value::DateTime(now_datetime())),
        ]),
    );
    let mut fields = f([
        ("metrics", Value::str(metrics)),
        ("primary_address_type", Value::str("IPv4")),
        ("device", Value::str(device)),
        ("network", Value::str(network)),
        ("host", Value::str(host)),
        ("MAC", Value::str(mac)),
        ("MTU", Value::Int(1500)),
        ("VLAN", Value::Int(-1)),
        ("physical", Value::Bool(true)),
        ("currently_attached", Value::Bool(true)),
        ("managed", Value::Bool(true)),
    ]);
    for (k, v) in extra {
        fields.insert(k.to_string(), v.clone());
    }
    let pif = db.create("PIF", fields);
    db.set_add(host, "PIFs", &pif);
    db.set_add(network, "PIFs", &pif);
}

fn pbd(db: &mut Db, host: &str, sr: &str) {
    let p = db.create(
        "PBD",
        f([
            ("host", Value::str(host)),
            ("SR", Value::str(sr)),
            ("currently_attached", Value::Bool(true)),
            ("device_config", Value::map([("location", "/dev/sda3")])),
        ]),
    );
    db.set_add(host, "PBDs", &p);
    db.set_add(sr, "PBDs", &p);
}

/// A VDI with synthetic content in `data` regions (each `(start MiB, length MiB)`).
fn disk(db: &mut Db, sr: &str, name: &str, size: i64, data: &[(i64, i64)], seed: u64) -> String {
    let thick = db.field_str(sr, "type") == "lvm";
    let r = api::insert_vdi(db, sr, f([("name_label", Value::str(name)), ("type", Value::str("user"))]), size, thick);
    let regions = data
        .iter()
        .enumerate()
        .map(|(i, &(start, len))| Synthetic {
            start: (start * MIB) as u64,
            end: ((start + len) * MIB).min(size) as u64,
            seed: seed * 31 + i as u64,
            zero_pct: 20,
            random_pct: 35,
        })
        .collect();
    let d = SparseDisk::with_synthetic(size as u64, regions);
    let allocated = d.allocated_bytes() as i64;
    db.disks.insert(r.clone(), d);
    if !thick {
        db.set(&r, "physical_utilisation", Value::Int(allocated));
        db.update(sr, |s| {
            let pu = s.get("physical_utilisation").and_then(Value::as_i64).unwrap_or(0) + allocated;
            s.insert("physical_utilisation".into(), Value::Int(pu));
        });
    }
    r
}

pub(crate) fn vbd(db: &mut Db, vm: &str, vdi: &str, userdevice: u32, cd: bool) -> String {
    let b = db.create(
        "VBD",
        f([
            ("VM", Value::str(vm)),
            ("VDI", Value::str(vdi)),
            ("userdevice", Value::str(userdevice.to_string())),
            ("device", Value::str(format!("xvd{}", (b'a' + userdevice as u8) as char))),
            ("bootable", Value::Bool(userdevice == 0)),
            ("mode", Value::str(if cd { "RO" } else { "RW" })),
            ("type", Value::str(if cd { "CD" } else { "Disk" })),
            ("unpluggable", Value::Bool(!cd)),
            ("empty", Value::Bool(vdi == crate::value::NULL_REF)),
        ]),
    );
    db.set_push(vm, "VBDs", &b);
    db.set_push(vdi, "VBDs", &b);
    b
}

/// One disk of a VM to build: SR, name, size and data regions `(start MiB, length MiB)`.
type DiskSpec<'a> = (&'a str, String, i64, Vec<(i64, i64)>);

/// Options of one VM to build.
struct VmSpec<'a> {
    name: &'a str,
    state: &'a str,
    host: usize,
    tags: &'a [&'a str],
    vcpus: i64,
    memory: i64,
    disks: Vec<DiskSpec<'a>>,
    cd: Option<&'a str>,
    ip: Option<&'a str>,
    os: Option<&'a str>,
}

/// What XAPI's templates recommend (copied into the VMs made from them).
const RECOMMENDATIONS: &str = "<restrictions><restriction field=\"memory-static-max\" max=\"1649267441664\"/>\
<restriction field=\"vcpus-max\" max=\"64\"/><restriction property=\"number-of-vbds\" max=\"255\"/>\
<restriction property=\"number-of-vifs\" max=\"7\"/><restriction field=\"has-vendor-device\" value=\"false\"/>\
</restrictions>";

fn vm(db: &mut Db, p: &Pool, spec: VmSpec<'_>, seed: u64) -> String {
    let running = spec.state != "Halted";
    let metrics = db.create(
        "VM_metrics",
        f([
            ("memory_actual", Value::Int(if running { spec.memory } else { 0 })),
            ("VCPUs_number", Value::Int(if running { spec.vcpus } else { 0 })),
            ("install_time", Value::DateTime("20250601T10:00:00Z".into())),
            ("start_time", Value::DateTime(if running { now_datetime() } else { "19700101T00:00:00Z".into() })),
            ("current_domain_type", Value::str(if running { "hvm" } else { "unspecified" })),
        ]),
    );
    let vm = db.create(
        "VM",
        f([
            ("name_label", Value::str(spec.name)),
            ("name_description", Value::str(format!("{} (simulated)", spec.name))),
            ("power_state", Value::str("Halted")),
            ("tags", Value::strs(spec.tags.iter().copied())),
            ("VCPUs_max", Value::Int(spec.vcpus)),
            ("VCPUs_at_startup", Value::Int(spec.vcpus)),
            ("memory_static_max", Value::Int(spec.memory)),
            ("memory_dynamic_max", Value::Int(spec.memory)),
            ("memory_dynamic_min", Value::Int(spec.memory / 2)),
            ("memory_static_min", Value::Int(spec.memory / 4)),
            ("memory_target", Value::Int(spec.memory)),
            ("HVM_boot_policy", Value::str("BIOS order")),
            ("HVM_boot_params", Value::map([("order", "cd"), ("firmware", "bios")])),
            (
                "platform",
                Value::map([
                    ("viridian", "false"),
                    ("nx", "true"),
                    ("acpi", "1"),
                    ("apic", "true"),
                    ("pae", "true"),
                    ("cores-per-socket", "1"),
                ]),
            ),
            ("other_config", Value::map([("auto_poweron", "false"), ("base_template_name", "Other install media")])),
            ("recommendations", Value::str(RECOMMENDATIONS)),
            ("metrics", Value::str(metrics)),
            ("domid", Value::Int(-1)),
            ("user_version", Value::Int(1)),
            ("actions_after_shutdown", Value::str("destroy")),
            ("hardware_platform_version", Value::Int(2)),
            ("has_vendor_device", Value::Bool(false)),
            ("allowed_operations", Value::strs(["start", "clone", "copy", "export", "snapshot", "destroy"])),
            ("affinity", Value::str(p.hosts[spec.host].clone())),
        ]),
    );
    for (i, (sr, name, size, data)) in spec.disks.into_iter().enumerate() {
        let d = disk(db, sr, &name, size, &data, seed * 7 + i as u64);
        vbd(db, &vm, &d, i as u32, false);
    }
    if let Some(iso) = spec.cd {
        vbd(db, &vm, iso, 3, true);
    }
    let vif = db.create(
        "VIF",
        f([
            ("device", Value::str("0")),
            ("network", Value::str(p.network.clone())),
            ("VM", Value::str(vm.clone())),
            ("MAC", Value::str(format!("da:e1:{:02x}:{:02x}:00:01", (seed >> 8) & 0xff, seed & 0xff))),
            ("MTU", Value::Int(1500)),
            ("MAC_autogenerated", Value::Bool(true)),
        ]),
    );
    db.set_push(&vm, "VIFs", &vif);
    db.set_push(&p.network, "VIFs", &vif);
    if running {
        match spec.state {
            "Running" | "Paused" => {
                let _ = api::vm_power(db, &vm, "start", spec.state == "Paused");
            }
            "Suspended" => {
                let _ = api::vm_power(db, &vm, "start", false);
                let _ = api::vm_power(db, &vm, "suspend", false);
            }
            _ => {}
        }
        if spec.state != "Suspended" {
            let (os, ip) = (spec.os.unwrap_or("Linux"), spec.ip.unwrap_or("192.0.2.100"));
            let gm = db.create(
                "VM_guest_metrics",
                f([
                    ("os_version", Value::map([("name", os), ("distro", "linux"), ("uname", "6.1.0-18-amd64")])),
                    ("PV_drivers_version", Value::map([("major", "9"), ("minor", "4"), ("micro", "0")])),
                    ("PV_drivers_up_to_date", Value::Bool(true)),
                    ("PV_drivers_detected", Value::Bool(true)),
                    ("networks", Value::map([("0/ip", ip), ("0/ipv4/0", ip)])),
                    (
                        "memory",
                        Value::map([
                            ("total", (spec.memory / 1024).to_string()),
                            ("free", (spec.memory / 4096).to_string()),
                        ]),
                    ),
                    ("live", Value::Bool(true)),
                    ("last_updated", Value::DateTime(now_datetime())),
                ]),
            );
            db.set(&vm, "guest_metrics", Value::str(gm));
        }
    }
    crate::allowed::update_vm(db, &vm);
    vm
}

/// The demo pool: infrastructure, ~10 VMs in mixed states, snapshots, templates and messages.
pub fn demo(db: &mut Db) -> Pool {
    let p = infrastructure(db);
    let (shared, local) = (p.shared_sr.clone(), p.local_sr.clone());
    let iso = disk(db, &p.iso_sr, "debian-12.9.0-amd64-netinst.iso", 632 * MIB, &[(0, 4)], 99);
    db.set(&iso, "read_only", Value::Bool(true));
    db.set(&iso, "sharable", Value::Bool(true));
    let web = vm(
        db,
        &p,
        VmSpec {
            name: "Debian 12 web",
            state: "Running",
            host: 0,
            tags: &["prod", "web"],
            vcpus: 2,
            memory: 2 * GIB,
            disks: vec![
                (&shared, "web root".into(), 8 * GIB, vec![(0, 6), (4096, 2)]),
                (&shared, "web data".into(), 2 * GIB, vec![(0, 4)]),
            ],
            cd: Some(&iso),
            ip: Some("192.0.2.101"),
            os: Some("Debian GNU/Linux 12 (bookworm)"),
        },
        1,
    );
    let db_vm = vm(
        db,
        &p,
        VmSpec {
            name: "Ubuntu 22.04 db",
            state: "Running",
            host: 1,
            tags: &["prod", "db"],
            vcpus: 4,
            memory: 8 * GIB,
            disks: vec![
                (&local, "db system".into(), 4 * GIB, vec![(0, 4)]),
                (&local, "[NOSNAP] db scratch".into(), GIB, vec![(0, 2)]),
            ],
            cd: None,
            ip: Some("192.0.2.102"),
            os: Some("Ubuntu 22.04.4 LTS"),
        },
        2,
    );
    let win = vm(
        db,
        &p,
        VmSpec {
            name: "Windows Server 2022",
            state: "Halted",
            host: 0,
            tags: &["windows"],
            vcpus: 4,
            memory: 8 * GIB,
            disks: vec![(&shared, "C:".into(), 40 * GIB, vec![(0, 8)])],
            cd: None,
            ip: None,
            os: None,
        },
        3,
    );
    vm(
        db,
        &p,
        VmSpec {
            name: "XOA 🎷",
            state: "Running",
            host: 0,
            tags: &["xo"],
            vcpus: 2,
            memory: 2 * GIB,
            disks: vec![(&shared, "xoa root".into(), 20 * GIB, vec![(0, 4)])],
            cd: None,
            ip: Some("192.0.2.103"),
            os: Some("Debian GNU/Linux 12 (bookworm)"),
        },
        4,
    );
    vm(
        db,
        &p,
        VmSpec {
            name: "Rocky Linux 8",
            state: "Halted",
            host: 0,
            tags: &[],
            vcpus: 1,
            memory: GIB,
            disks: vec![(&shared, "rocky root".into(), 64 * MIB, vec![(0, 6), (40, 3)])],
            cd: None,
            ip: None,
            os: None,
        },
        5,
    );
    vm(
        db,
        &p,
        VmSpec {
            name: "FreeNAS",
            state: "Suspended",
            host: 1,
            tags: &["storage"],
            vcpus: 2,
            memory: 256 * MIB,
            disks: vec![(&shared, "freenas boot".into(), 128 * MIB, vec![(0, 8)])],
            cd: None,
            ip: None,
            os: None,
        },
        6,
    );
    vm(
        db,
        &p,
        VmSpec {
            name: "Build agent",
            state: "Paused",
            host: 1,
            tags: &["ci"],
            vcpus: 8,
            memory: 16 * GIB,
            disks: vec![(&shared, "agent root".into(), 32 * MIB, vec![(0, 32)])],
            cd: None,
            ip: Some("192.0.2.104"),
            os: None,
        },
        7,
    );
    vm(
        db,
        &p,
        VmSpec {
            name: "Empty VM",
            state: "Halted",
            host: 0,
            tags: &[],
            vcpus: 1,
            memory: 512 * MIB,
            disks: vec![],
            cd: None,
            ip: None,
            os: None,
        },
        8,
    );
    let blocked = vm(
        db,
        &p,
        VmSpec {
            name: "Protected VM",
            state: "Halted",
            host: 0,
            tags: &["protected"],
            vcpus: 1,
            memory: 512 * MIB,
            disks: vec![(&shared, "protected root".into(), 16 * MIB, vec![(0, 4)])],
            cd: None,
            ip: None,
            os: None,
        },
        9,
    );
    db.set(&blocked, "blocked_operations", Value::map([("destroy", "true"), ("export", "true")]));
    crate::allowed::update_vm(db, &blocked);
    vm(
        db,
        &p,
        VmSpec {
            name: "Big data",
            state: "Halted",
            host: 0,
            tags: &["sparse"],
            vcpus: 2,
            memory: 4 * GIB,
            disks: vec![(&shared, "100 GiB holding 10 MiB".into(), 100 * GIB, vec![(0, 4), (51200, 4), (102398, 2)])],
            cd: None,
            ip: None,
            os: None,
        },
        10,
    );
    // A Windows guest (platform device 0002) and a VM XO created (its `xo:<uuid prefix>` creation record).
    db.update(&win, |f| {
        if let Some(Value::Map(m)) = f.get_mut("platform") {
            m.push(("device_id".into(), Value::str("0002")));
            m.retain(|(k, _)| k != "viridian");
            m.push(("viridian".into(), Value::str("true")));
        }
    });
    let web_uuid = db.field_str(&web, "uuid");
    let creation = r#"{"creation":{"date":"2025-06-01T10:00:00.000Z","user":"3b0a6a9c-1f6b-4e2a-9a51-2c4d0e7f1a11"}}"#;
    db.update(&web, |f| {
        if let Some(Value::Map(m)) = f.get_mut("other_config") {
            m.push((format!("xo:{}", &web_uuid[..8]), Value::str(creation)));
        }
    });
    let _ = api::vm_snapshot(db, &web, "Debian 12 web - before upgrade", &[]);
    let _ = api::vm_snapshot(db, &win, "Windows Server 2022 - patched", &[]);
    let _ = db_vm;
    // A default (built-in) template and a user template.
    let tpl = db.create(
        "VM",
        f([
            ("name_label", Value::str("Debian Bookworm 12")),
            ("name_description", Value::str("To install Debian Bookworm 12 from a repository")),
            ("is_a_template", Value::Bool(true)),
            ("is_default_template", Value::Bool(true)),
            ("memory_static_max", Value::Int(GIB)),
            ("VCPUs_max", Value::Int(1)),
            ("VCPUs_at_startup", Value::Int(1)),
            (
                "other_config",
                Value::map([
                    ("default_template", "true"),
                    ("install-methods", "cdrom,nfs,http,ftp"),
                    ("linux_template", "true"),
                    ("disks", "<provision><disk device=\"0\" size=\"10737418240\" sr=\"\" bootable=\"true\" type=\"system\"/></provision>"),
                ]),
            ),
        ]),
    );
    let _ = tpl;
    let user_tpl = vm(
        db,
        &p,
        VmSpec {
            name: "Web server template",
            state: "Halted",
            host: 0,
            tags: &["template"],
            vcpus: 2,
            memory: 2 * GIB,
            disks: vec![(&shared, "template root".into(), 64 * MIB, vec![(0, 8)])],
            cd: None,
            ip: None,
            os: None,
        },
        11,
    );
    db.set(&user_tpl, "is_a_template", Value::Bool(true));
    let host_uuid = db.field_str(&p.hosts[0], "uuid");
    let web_uuid = db.field_str(&web, "uuid");
    db.create(
        "message",
        f([
            ("name", Value::str("ALARM")),
            ("priority", Value::Int(3)),
            ("cls", Value::str("Host")),
            ("obj_uuid", Value::str(host_uuid)),
            ("timestamp", Value::DateTime(now_datetime())),
            ("body", Value::str("value: 0.950000\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t<alarm_trigger_level value=\"0.9\"/>\n</variable>\n")),
        ]),
    );
    db.create(
        "message",
        f([
            ("name", Value::str("VM_STARTED")),
            ("priority", Value::Int(5)),
            ("cls", Value::str("VM")),
            ("obj_uuid", Value::str(web_uuid)),
            ("timestamp", Value::DateTime(now_datetime())),
            ("body", Value::str("VM 'Debian 12 web' started")),
        ]),
    );
    p
}

/// Adds `n` small generated VMs (mixed power states, one empty 1 GiB disk and one VIF each).
pub fn generated(db: &mut Db, p: &Pool, n: usize) {
    let states = ["Running", "Halted", "Halted", "Running", "Suspended", "Paused"];
    for i in 0..n {
        let state = states[i % states.len()];
        let name = format!("vm-{i:05}");
        let tags: &[&str] = if i % 3 == 0 { &["batch"] } else { &[] };
        let shared = p.shared_sr.clone();
        vm(
            db,
            p,
            VmSpec {
                name: &name,
                state: if state == "Suspended" { "Halted" } else { state },
                host: i % 2,
                tags,
                vcpus: 1 + (i % 4) as i64,
                memory: GIB,
                disks: vec![(&shared, format!("{name} disk"), GIB, vec![])],
                cd: None,
                ip: None,
                os: None,
            },
            1000 + i as u64,
        );
    }
}
