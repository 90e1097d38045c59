//! The official Python `XenAPI` client, unchanged, against the simulator (in a venv this test creates).

mod common;
use std::path::PathBuf;
use std::process::Command;

/// The XenAPI release the check is pinned to.
const XENAPI_VERSION: &str = "26.21.1";

fn venv_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xenapi-venv");
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", &format!("import importlib.metadata as m; assert m.version('XenAPI') == '{XENAPI_VERSION}'")])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let st = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 is required");
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("XenAPI=={XENAPI_VERSION}"),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "pip install XenAPI failed");
    }
    python
}

#[test]
fn official_python_xenapi_client_works_unchanged() {
    let python = venv_python();
    let sim = common::Sim::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/xenapi_client.py");
    let out = Command::new(python).arg(script).arg(&sim.url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("XenAPI client OK"));
    // The script's calls reached the simulator through XML-RPC.
    let calls = &sim.stats()["calls"];
    for m in [
        "system.listMethods",
        "session.login_with_password",
        "VM.get_all_records",
        "VDI.create",
        "VDI.destroy",
        "session.logout",
    ] {
        assert!(calls[m].as_u64().unwrap_or(0) >= 1, "{m} not called: {calls}");
    }
}
