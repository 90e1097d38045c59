//! The whole request path, not only the parsers: any method, path, query, headers and body, with a real token, a
//! real cookie, Basic credentials or only what the input carries, authenticated, routed (the JSON routes of the
//! `api` and `tokens` components, and the planning half of the transfers: route, upload headers, XAPI checks, task,
//! VDI or snapshot, then the cleanup a failed transfer gets) and answered against the simulator's XAPI, in-process.
//! Never a panic; every answer is a JSON error or a success; nothing a request created is left on XAPI (a
//! `DELETE` may remove objects, so counts may only go down; a `POST` may create some on purpose: new disks and
//! devices, clones, snapshots, tasks).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};
use xapi_sim::sim::Sim;
use xo_edge::auth::throttle::MemoryStore as Memory;
use xo_edge::config::Config;
use xo_edge::rest::{self, auth, Ctx, Reply, Request};
use xo_edge::transfer::export::{self, Plan};
use xo_edge::transfer::import::{self, BodyFailure};
use xo_edge::transfer::vm_export;
use xo_edge::xapi::{Transport, TransportError};

/// XAPI: the simulator's JSON-RPC, called in-process; and a shared store (login throttling), fresh per input.
struct SimTransport(Arc<Sim>, Memory);

impl Transport for SimTransport {
    async fn post_json(&self, path: &str, body: Vec<u8>, _patience: u64) -> Result<(u16, Vec<u8>), TransportError> {
        if path != "/jsonrpc" {
            return Ok((404, Vec::new()));
        }
        let Ok(req) = xapi_sim::jsonrpc::parse(&body) else { return Ok((500, b"<html>malformed</html>".to_vec())) };
        let result = xapi_sim::api::call(&self.0, &req.method, req.params.clone()).await;
        Ok((200, xapi_sim::jsonrpc::reply(&req, &result).to_string().into_bytes()))
    }

    fn shared_store(&self) -> Option<&dyn xo_edge::auth::throttle::Store> {
        Some(&self.1)
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    sim: Arc<Sim>,
    config: Config,
    /// A token of root's; made again after an input that may have revoked it.
    token: Mutex<String>,
    /// Uuids of the demo pool that inputs name as `$SR`, `$VDI`, `$VM` (halted), `$RUNNING`, `$HOST` (host 2),
    /// `$MASTER`, `$POOL` and `$NET` (eth0's network).
    names: Vec<(&'static str, String)>,
    /// The demo pool as built, put back after an input deleted something (so `$VM` and the others keep naming
    /// objects).
    pristine: xapi_sim::db::Db,
}

const NOW: u64 = 1_795_790_000;

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sim = xapi_sim::build(&xapi_sim::Options::default());
        let config = Config::from_lookup(|k| match k {
            "xapi_url" => Some("http://127.0.0.1:9".into()),
            "token_secret" => Some("fuzz-secret-0123456789abcdef-0123456789".into()),
            "basic_auth" => Some("everywhere".into()),
            _ => None,
        })
        .unwrap();
        let token = Mutex::new(runtime.block_on(new_token(&sim, &config)));
        let names = runtime.block_on(names(&sim));
        let pristine = sim.db.lock().clone();
        World { runtime, sim, config, token, names, pristine }
    })
}

/// A token for root, made through the token endpoint.
async fn new_token(sim: &Arc<Sim>, config: &Config) -> String {
    let transport = SimTransport(sim.clone(), Memory::default());
    let ctx = Ctx::new(config, &transport, NOW);
    let req = Request {
        method: "POST".into(),
        path: "/rest/v0/users/authentication_tokens".into(),
        headers: vec![("authorization".into(), "Basic cm9vdDp4YXBpLXNpbQ==".into())],
        ..Request::default()
    };
    let reply = rest::tokens::route(&ctx, &req).await;
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    body["token"]["id"].as_str().unwrap_or_default().to_string()
}

/// The demo pool's uuids that inputs may name.
async fn names(sim: &Arc<Sim>) -> Vec<(&'static str, String)> {
    use xapi_sim::value::Value;
    let s = xapi_sim::api::call(sim, "session.login_with_password", vec![Value::from("root"), Value::from("xapi-sim")])
        .await
        .unwrap();
    let uuid_of = |class: &'static str, name: &'static str| {
        let s = s.clone();
        async move {
            let by_name = format!("{class}.get_by_name_label");
            let refs = xapi_sim::api::call(sim, &by_name, vec![s.clone(), Value::from(name)]).await;
            let r = refs.unwrap().to_json()[0].as_str().unwrap().to_string();
            let get_uuid = format!("{class}.get_uuid");
            let uuid = xapi_sim::api::call(sim, &get_uuid, vec![s, Value::from(r.as_str())]).await.unwrap();
            uuid.to_json().as_str().unwrap().to_string()
        }
    };
    vec![
        ("$SR", uuid_of("SR", "Shared NFS storage").await),
        ("$VDI", uuid_of("VDI", "rocky root").await),
        ("$VM", uuid_of("VM", "Rocky Linux 8").await),
        ("$RUNNING", uuid_of("VM", "Debian 12 web").await),
        ("$HOST", uuid_of("host", "xcp-host2").await),
        ("$MASTER", uuid_of("host", "xcp-host1").await),
        ("$POOL", uuid_of("pool", "Demo pool").await),
        ("$NET", uuid_of("network", "Pool-wide network associated with eth0").await),
    ]
}

/// VDIs, VMs and tasks on the simulator.
fn counts(sim: &Sim) -> (usize, usize, usize) {
    let db = sim.db.lock();
    (db.all("VDI").count(), db.all("VM").count(), db.all("task").count())
}

/// The input as a request: a credentials byte, then `METHOD path?query`, header lines, an empty line, the body.
fn request(data: &[u8], token: &str, names: &[(&str, String)]) -> Option<Request> {
    let (&creds, rest) = data.split_first()?;
    let mut text = std::str::from_utf8(rest).ok()?.to_string();
    for (name, uuid) in names {
        text = text.replace(name, uuid);
    }
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    match creds % 4 {
        0 => headers.push(("authorization".into(), format!("Bearer {token}"))),
        1 => headers.push(("cookie".into(), format!("authenticationToken={token}"))),
        2 => headers.push(("authorization".into(), "Basic cm9vdDp4YXBpLXNpbQ==".into())),
        _ => {}
    }
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    })
}

fn check(reply: &Reply) {
    assert!((100..600).contains(&reply.status), "status {}", reply.status);
    if reply.status >= 400 {
        let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON error");
        assert!(body["error"].is_string(), "{body}");
    }
}

/// The transfers component's planning and, as if the body or the client then failed, its cleanup.
async fn transfer(ctx: &Ctx<'_, SimTransport>, req: &Request) {
    let Ok(caller) = auth::authenticate(ctx, req).await else { return };
    if let Some(route) = import::import_route(&req.method, &req.path, &req.query) {
        if let Ok(upload) = import::read_upload(req, route) {
            let size = upload.length.unwrap_or(1 << 20);
            if let Ok(plan) = import::plan_import(ctx, &caller, &upload, size, size).await {
                let failed = Err(BodyFailure::Short("fuzz".into()));
                let reply = import::finish(ctx, &plan, Err("not called".into()), failed).await;
                assert!(reply.is_err(), "a failed import answered a success");
            }
        }
    } else if let Some(route) = vm_export::vm_route(&req.path) {
        if let Ok(plan) = vm_export::plan_vm_export(ctx, &caller, req, &route).await {
            let _ = export::end(ctx, &plan, 0.0).await;
        }
    } else if let Some(route) = export::disk_route(&req.path) {
        if let Ok(Plan::Stream(plan)) = export::plan_vdi_export(ctx, &caller, req, &route).await {
            let _ = export::end(ctx, &plan, 0.0).await;
        }
    }
    if caller.basic {
        let _ = ctx.xapi.logout(&caller.session).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let token = w.token.lock().unwrap().clone();
    let Some(req) = request(data, &token, &w.names) else { return };
    let transport = SimTransport(w.sim.clone(), Memory::default());
    let before = counts(&w.sim);
    w.runtime.block_on(async {
        let ctx = Ctx::new(&w.config, &transport, NOW);
        check(&rest::api(&ctx, &req).await);
        check(&rest::tokens::route(&ctx, &req).await);
        transfer(&ctx, &req).await;
        if req.method != "GET" && req.method != "HEAD" {
            // It may have revoked the token: a new one, and the old one's session ended (sessions would pile up).
            if let Ok((claims, _)) = xo_edge::auth::token::open(&token, &[w.config.token_secret.as_slice()]) {
                let _ = ctx.xapi.logout(&claims.session).await;
            }
            *w.token.lock().unwrap() = new_token(&w.sim, &w.config).await;
        }
    });
    // The XAPI operations the request started in the background (`Async.*`) run to their end here, so that none
    // lands in the next input's counts.
    w.runtime.block_on(async {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
    });
    // DELETE may remove objects on purpose; POST (creation, actions: a clone, a snapshot, a task) may add some;
    // nothing else may add anything.
    let after = counts(&w.sim);
    if req.method != "POST" {
        assert!(after.0 <= before.0 && after.1 <= before.1 && after.2 <= before.2, "left on XAPI: {req:?}");
    }
    // Writes change more than counts (a host disabled or down, sessions dropped by a toolstack restart): every
    // write's input is followed by the demo pool as built, with its hosts' local state.
    if after != before || req.method != "GET" && req.method != "HEAD" {
        *w.sim.db.lock() = w.pristine.clone();
        w.sim.auto_enable_off.lock().clear();
    }
});
