//! `xapi-sim`: serve a simulated XAPI pool on a loopback port.

use clap::Parser;
use std::time::Duration;

/// A simulated XCP-ng pool speaking XAPI (JSON-RPC, XML-RPC and the HTTP export/import handlers).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Build the demo pool (the default when --vms is not given).
    #[arg(long)]
    demo: bool,
    /// Generate N extra VMs (e.g. 10000 for load and benchmark runs).
    #[arg(long, default_value_t = 0)]
    vms: usize,
    /// Password of the local superuser `root`.
    #[arg(long, default_value = "xapi-sim")]
    root_password: String,
    /// Idle seconds after which a session expires (XAPI: 86400).
    #[arg(long, default_value_t = 86400)]
    session_timeout: u64,
    /// Refuse zstd exports as licence-restricted XenServer pools do.
    #[arg(long)]
    restrict_zstd: bool,
    /// Write the bound port to this file once listening (for test harnesses).
    #[arg(long)]
    port_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let options = xapi_sim::Options {
        demo: args.demo || args.vms == 0,
        vms: args.vms,
        root_password: args.root_password.clone(),
        config: xapi_sim::sim::Config {
            session_timeout: Duration::from_secs(args.session_timeout),
            ..Default::default()
        },
        restrict_zstd: args.restrict_zstd,
    };
    let started = std::time::Instant::now();
    let sim = xapi_sim::build(&options);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let hosts = xapi_sim::server::bind(&sim, listener).await?;
    let vms = sim.db.lock().count("VM");
    println!("XAPI_SIM_URL=http://{addr}");
    println!("xapi-sim: {vms} VM records built in {:?}", started.elapsed());
    println!("xapi-sim: users root/{} (pool-admin, local superuser), admin/admin-password (pool-admin), auditor/auditor-password (read-only)", args.root_password);
    if let Some(p) = &args.port_file {
        std::fs::write(p, addr.port().to_string())?;
    }
    for (host, _) in &hosts {
        let db = sim.db.lock();
        println!(
            "xapi-sim: host {} on {}",
            db.field_str(host, "name_label"),
            xapi_sim::pool_net::url_of(&sim, host).unwrap_or_default()
        );
    }
    xapi_sim::server::serve(sim, hosts).await
}
