//! A host's logs over HTTP: XAPI's audit log (`GET /audit_log`) and the logs archive (`GET /host_logs_download`).
//!
//! - **The audit log** (`ocaml/xapi/rbac_audit.ml`): one line per side-effecting call of a session, read-only calls
//!   left out: the session's track id, subject, user name, `ALLOWED` or `DENIED`, `OK` or `ERROR:<code>`, `API`,
//!   the call's name. Lines carry XAPI's debug timestamp (`[20261203T03:00:00.123Z|audit|…]`) behind a syslog
//!   prefix, as `/var/log/audit.log` holds them.
//! - `GET /audit_log[?since=<ISO 8601>]` (`ocaml/xapi/audit_log.ml`, `handler`): `text/plain` without a
//!   `Content-Length`, the lines whose timestamp is at or after `since` (compared as XAPI does: the 21 characters
//!   after `[` against `since` without its `-` and `Z`).
//! - `GET /host_logs_download` (`ocaml/xapi/xapi_logs_download.ml`, `logs_download_handler`): `200` and the output
//!   of the logs-download script, a gzip'd tar of `/var/log`, without a `Content-Length`. Here the archive holds a
//!   synthetic `xensource.log` of [`XENSOURCE_LOG_BYTES`], `SMlog` and the audit log.
//!
//! The HTTP side (session, task, faults, a close-delimited body) is [`crate::handlers`]'.

use crate::sim::{Session, Sim, XapiError};
use crate::value::Value;

/// Lines the simulator keeps (the oldest go first).
const AUDIT_LINES: usize = 100_000;

/// The size of the synthetic `xensource.log` in the logs archive.
pub const XENSOURCE_LOG_BYTES: usize = 4 << 20;

fn now_stamp() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}:{:02}:{:02}.{:03}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months[usize::from(u8::from(now.month())).saturating_sub(1) % 12];
    let syslog = format!("{month} {:>2} {:02}:{:02}:{:02}", now.day(), now.hour(), now.minute(), now.second());
    (stamp, syslog)
}

/// Appends the audit line of a call.
pub fn audit(sim: &Sim, session: &Session, name: &str, result: &Result<Value, XapiError>) {
    let (verdict, outcome) = match result {
        Ok(_) => ("ALLOWED", "OK".to_string()),
        Err(e) if e.code() == "RBAC_PERMISSION_DENIED" => ("DENIED", String::new()),
        Err(e) => ("ALLOWED", format!("ERROR:{}", e.code())),
    };
    let (stamp, syslog) = now_stamp();
    let track = &session.uuid[..session.uuid.len().min(8)];
    let subject = if session.local_superuser { "LOCAL_SUPERUSER" } else { session.subject.as_str() };
    let line = format!(
        "{syslog} xcp-host0 xapi: [{stamp}Z|audit|xcp-host0|0 |{name}|audit] ('trackid={track}' '{subject}' '{}' \
         '{verdict}' '{outcome}' 'API' '{name}' ())",
        session.user
    );
    let mut audit = sim.audit.lock();
    if audit.len() >= AUDIT_LINES {
        audit.pop_front();
    }
    audit.push_back(line);
}

/// The audit lines at or after `since` (ISO 8601; XAPI drops its `-` and `Z` and compares the 21 characters after
/// each line's `[`), each with its newline.
pub fn audit_since(sim: &Sim, since: &str) -> String {
    let since: String = since.chars().filter(|c| *c != '-' && *c != 'Z').collect();
    let mut text = String::new();
    for line in sim.audit.lock().iter() {
        let at = line.find('[').map_or(0, |i| i + 1);
        let Some(stamp) = line.get(at..at + 21) else { continue };
        if since.is_empty() || stamp >= since.as_str() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The logs archive: a gzip'd tar of a few of `/var/log`'s files.
pub fn archive(audit: &str) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut xensource = String::with_capacity(XENSOURCE_LOG_BYTES + 200);
    let mut n = 0u64;
    while xensource.len() < XENSOURCE_LOG_BYTES {
        n += 1;
        xensource.push_str(&format!(
            "Dec  3 03:00:00 xcp-host0 xapi: [debug||{n} |event.from D:{n:08x}|xapi_event] simulated line {n}\n"
        ));
    }
    let files: [(&str, &[u8]); 3] = [
        ("var/log/xensource.log", xensource.as_bytes()),
        ("var/log/SMlog", b"Dec  3 03:00:00 xcp-host0 SM: [1] simulated SM line\n"),
        ("var/log/audit.log", audit.as_bytes()),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data)?;
    }
    tar.into_inner()?.finish()
}
