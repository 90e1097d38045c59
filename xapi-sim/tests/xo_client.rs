//! Xen Orchestra's own XAPI client against the simulator, end to end: npm `xen-api` 4.7.6 with
//! `@xen-orchestra/xapi` 8.10.5, exact versions from `tests/xo/package-lock.json`, installed with `npm ci` into the
//! target folder on first run (node and npm are required; `.ci/run` installs them when missing).
//!
//! The script (`tests/xo/xo_client.mjs`) connects (its sequence starts with `system.listMethods` without a
//! session), fills the object cache, follows `event.from` through `xo:` keys in `pool.other_config` and their
//! removal, logs in again after `SESSION_INVALID`, and runs the transfer helpers to completion: `VDI_create`,
//! `VDI_importContent` (raw), `VDI_exportContent` (raw, VHD), `SR_importVdi` (VHD, raw), `VM_export` of a halted
//! VM (plain, gzip, zstd) and of a running VM (through `VM_snapshot`), `VDI_destroy`. Each step has 20 s; the
//! simulator's counts of VMs, snapshots, VDIs, tasks and sessions must be back to the start.
//!
//! Four packages that `@xen-orchestra/xapi` or `vhd-lib` declare are not on the registry this project installs
//! from; `tests/xo/shims/` stands in for them (see `tests/xo/README.md`). None is on the paths checked here, but
//! `@vates/parse-duration`, called once by the client's constructor.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sources() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/xo")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The folder holding the installed client and the script; `npm ci` runs only when the lockfile changed.
fn installed() -> PathBuf {
    // The two tests of this binary run in parallel; one installs, the other waits.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xo-client");
    let src = sources();
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let stamp = dir.join("node_modules/.xapi-sim-lock");
    let current = std::fs::read(&stamp).is_ok_and(|s| s == lock);
    for file in ["package.json", "package-lock.json", ".npmrc", "xo_client.mjs"] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    copy_dir(&src.join("shims"), &dir.join("shims"));
    if !current {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is required (node 20 or later); .ci/run installs it");
        assert!(st.success(), "npm ci failed");
        std::fs::write(&stamp, lock).unwrap();
    }
    dir
}

fn run(transport: &str) {
    let dir = installed();
    let sim = common::Sim::start();
    let out = Command::new("node")
        .arg("xo_client.mjs")
        .arg(&sim.url)
        .arg(transport)
        .current_dir(&dir)
        .output()
        .expect("node is required; .ci/run installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("XO client OK"),
        "{transport}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let stats = sim.stats();
    let calls = &stats["calls"];
    // The connection sequence's introspection, the re-login after SESSION_INVALID, the event loop, the barrier,
    // the import's probe and progress, and the async calls all reached the simulator.
    assert!(calls["system.listMethods"].as_u64() >= Some(1), "{calls}");
    assert!(calls["session.login_with_password"].as_u64() >= Some(2), "no re-login: {calls}");
    for m in [
        "event.inject",
        "event.from",
        "pool.add_to_other_config",
        "pool.remove_from_other_config",
        "task.create",
        "task.set_progress",
        "VDI.remove_from_other_config",
        "Async.VM.snapshot",
        "Async.VM.destroy",
        "Async.VDI.destroy",
    ] {
        assert!(calls[m].as_u64() >= Some(1), "{m} not called: {calls}");
    }
    for path in ["/import_raw_vdi", "/export_raw_vdi", "/export"] {
        assert!(stats["handler_requests"][path].as_u64() >= Some(3), "{path}: {stats}");
    }
    assert_eq!(stats["pending_tasks"], 0, "{stats}");
}

#[test]
fn xo_client_end_to_end_over_json_rpc() {
    run("json-rpc");
}

#[test]
fn xo_client_end_to_end_over_xml_rpc() {
    run("xml-rpc");
}
