//! xapi-sim: a native stand-in for an XCP-ng / XenServer pool's XAPI, for xo-edge's tests, benchmarks and demo.
//!
//! It speaks XAPI's two RPC protocols (JSON-RPC at `/jsonrpc`, XML-RPC elsewhere) with XAPI's envelopes and
//! errors, models sessions and RBAC, the datamodel classes the REST API reads, the writes it makes (VDI
//! create/destroy, snapshots, power operations, tasks, events), and the HTTP handlers that move disks and VMs
//! (`/export` as XVA, `/export_raw_vdi` as raw or VHD, `/import_raw_vdi`, `/import` of an XVA), on sparse disks. Tests steer it and
//! look inside through a separate control API (`/_sim/...`): fault injection, object and call counters.
//!
//! What it is not: a hypervisor (no guest runs), a storage manager (no SM backends, no coalescing), or a full
//! XenAPI (classes and calls the REST API does not use are absent and answer `MESSAGE_METHOD_UNKNOWN`).
//!
//! Modules:
//! - [`value`]: XAPI's typed values and their JSON / XML-RPC encodings.
//! - [`xmlrpc`], [`jsonrpc`]: the two wire protocols.
//! - [`datamodel`]: XAPI's published field types and enums, and the check of a record against them.
//! - [`schema`]: classes, fields, types and defaults.
//! - [`db`]: objects, uuid index, event log, disks.
//! - [`where_expr`]: the `get_all_records_where` language.
//! - [`sim`]: shared state: users, sessions, faults, counters.
//! - [`api`]: the call surface and its rules.
//! - [`disk`]: sparse disk contents.
//! - [`xva`]: the XVA writer and a strict XVA checker.
//! - [`handlers`]: `/export`, `/export_raw_vdi`, `/import_raw_vdi`, `/import`.
//! - [`import`]: an XVA read into a new VM (for `/import`).
//! - [`infra`]: hosts, storage and networks (issue 17's calls).
//! - [`control`]: the `/_sim/` control API.
//! - [`scenario`]: the demo pool and generated pools.
//! - [`server`]: routing of XAPI's endpoints and the control API.
//! - [`pool_net`]: every host on an address of its own; hosts going down and coming back.

pub mod allowed;
pub mod api;
pub mod control;
pub mod datamodel;
pub mod db;
pub mod devices;
pub mod disk;
pub mod handlers;
pub mod hostlogs;
pub mod import;
pub mod infra;
pub mod jsonrpc;
pub mod perfmon;
pub mod pool_net;
pub mod rrd;
pub mod scenario;
pub mod schema;
pub mod server;
pub mod sim;
pub mod value;
pub mod vdi_ops;
pub mod vm_ops;
pub mod vm_settings;
pub mod where_expr;
pub mod xmlrpc;
pub mod xva;

use std::sync::Arc;

/// How to build a simulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Build the demo pool's VMs.
    pub demo: bool,
    /// Extra generated VMs.
    pub vms: usize,
    pub root_password: String,
    pub config: sim::Config,
    /// Forbid zstd exports, as XenServer licences do (`restrict_zstd_export`).
    pub restrict_zstd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            demo: true,
            vms: 0,
            root_password: "xapi-sim".into(),
            config: sim::Config::default(),
            restrict_zstd: false,
        }
    }
}

/// Builds a simulator from `options`.
pub fn build(options: &Options) -> Arc<sim::Sim> {
    let mut db = db::Db::new();
    let users = scenario::users(&mut db, &options.root_password);
    let pool = if options.demo { scenario::demo(&mut db) } else { scenario::infrastructure(&mut db) };
    if options.vms > 0 {
        scenario::generated(&mut db, &pool, options.vms);
    }
    if options.restrict_zstd {
        db.set(&pool.pool, "restrictions", value::Value::map([("restrict_zstd_export", "true")]));
    }
    Arc::new(sim::Sim::new(db, users, options.config.clone()))
}

/// Starts a simulator on `addr` in the current tokio runtime; returns its bound address.
pub async fn start(options: &Options, addr: &str) -> std::io::Result<(std::net::SocketAddr, Arc<sim::Sim>)> {
    let sim = build(options);
    // Port 0: another port when one of the other hosts' addresses is taken on the one picked.
    let mut tries = if addr.ends_with(":0") { 20 } else { 1 };
    let (local, hosts) = loop {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        match server::bind(&sim, listener).await {
            Ok(hosts) => break (local, hosts),
            Err(e) => {
                tries -= 1;
                if tries == 0 {
                    return Err(e);
                }
            }
        }
    };
    let s = sim.clone();
    tokio::spawn(async move {
        let _ = server::serve(s, hosts).await;
    });
    Ok((local, sim))
}

/// A simulator running on a runtime of its own, for callers that are not async (tests, tools).
pub struct Background {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub sim: Arc<sim::Sim>,
    _runtime: tokio::runtime::Runtime,
}

/// Starts a simulator on a free loopback port in the background; it stops when the value is dropped.
pub fn start_background(options: &Options) -> std::io::Result<Background> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (addr, sim) = runtime.block_on(start(options, "127.0.0.1:0"))?;
    Ok(Background { url: format!("http://{addr}"), sim, _runtime: runtime })
}
