//! The simulator's shared state: database, users and sessions, fault injection and call counters.
//!
//! One [`Sim`] is shared by every connection. Users and sessions model XAPI's authentication and RBAC (a local
//! superuser, an external pool-admin subject, a read-only subject); faults are set by tests through the control
//! API (`/_sim/...`), never through the XAPI surface. Calls are not dispatched here (see `api`).

use crate::db::Db;
use crate::value::{Value, NULL_REF};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// A XAPI failure: the error code followed by its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XapiError(pub Vec<String>);

impl XapiError {
    pub fn new(code: &str, params: &[&str]) -> Self {
        let mut v = vec![code.to_string()];
        v.extend(params.iter().map(|s| s.to_string()));
        XapiError(v)
    }

    pub fn code(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("INTERNAL_ERROR")
    }
}

/// XAPI's RBAC roles, from most to least powerful (only the two the simulator distinguishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    PoolAdmin,
    ReadOnly,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::PoolAdmin => "pool-admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// An account that can log in.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub role: Role,
    /// `root`: the local superuser, which has no subject.
    pub local_superuser: bool,
    /// The subject ref for external users (`OpaqueRef:NULL` for the local superuser).
    pub subject: String,
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub reference: String,
    pub uuid: String,
    pub user: String,
    pub role: Role,
    pub local_superuser: bool,
    pub subject: String,
    pub originator: String,
    pub last_active: Instant,
}

/// One "fail the Nth call" rule.
#[derive(Debug, Clone, Deserialize)]
pub struct FailRule {
    /// Method name as called (e.g. `VDI.create`, `Async.VM.snapshot`), or a handler path (`/export`).
    pub method: String,
    /// Which call fails, counted from when the rule was set (1 = the next one).
    pub nth: u64,
    /// The XAPI error to answer, `[code, params…]`.
    #[serde(default = "default_fail_error")]
    pub error: Vec<String>,
    #[serde(skip)]
    pub seen: u64,
}

fn default_fail_error() -> Vec<String> {
    vec!["INTERNAL_ERROR".into(), "injected fault".into()]
}

/// Faults tests can switch on through `POST /_sim/faults`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Delay before answering, per method or handler path; key `*` applies to every call.
    #[serde(default)]
    pub latency_ms: HashMap<String, u64>,
    #[serde(default)]
    pub fail: Vec<FailRule>,
    /// Cut the response body of a handler (`/export`, `/export_raw_vdi`) or stop reading an upload
    /// (`/import_raw_vdi`) after this many bytes; the task fails.
    #[serde(default)]
    pub cut_after: HashMap<String, u64>,
    /// Handlers that answer `200` and then an `HTTP/1.1 500` response inside the body (xen-api issue 4603).
    #[serde(default)]
    pub http_error_in_body: HashSet<String>,
    /// Bandwidth cap in bytes per second per handler transfer (0 = unlimited), to make transfers observable.
    #[serde(default)]
    pub throttle_bytes_per_sec: HashMap<String, u64>,
    /// How long an `Async.*` operation runs under its task, per synchronous method name (`VM.clone`) or `*`: its
    /// progress advances in tenths, the object lists it in `current_operations`, and `task.cancel` ends it.
    #[serde(default)]
    pub op_duration_ms: HashMap<String, u64>,
    /// How long a rebooting host stays down before it is live again (default 300 ms); a toolstack restart takes a
    /// quarter of it.
    #[serde(default)]
    pub host_boot_ms: Option<u64>,
    /// Handlers (by path) that answer `302` whatever the storage: to this base URL (`http://host:port`), or with
    /// `"next"` to the next host of the pool (the hosts then send the request round in a loop). What a broken or
    /// hostile pool member could answer; XAPI itself redirects only to the host that sees the storage.
    #[serde(default)]
    pub redirect: HashMap<String, String>,
}

/// Counters tests read through `GET /_sim/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: BTreeMap<String, u64>,
    pub handler_requests: BTreeMap<String, u64>,
    /// RPC requests (JSON-RPC and XML-RPC) that came without a `Content-Length`, i.e. with a chunked body: on a
    /// pooled connection without `TCP_NODELAY` such a body trails its headers and costs a delayed-ACK wait.
    pub rpc_chunked: u64,
    /// All RPC requests.
    pub rpc_requests: u64,
    /// Calls running now, by method (an `event.from` waiting counts): what a test looks at to prove that a client
    /// which went away left no call behind.
    pub in_flight: BTreeMap<String, u64>,
}

/// Simulator configuration fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Idle time after which a session is invalid (XAPI: 24 h).
    pub session_timeout: Duration,
    /// Age after which a finished task is destroyed (XAPI's `completed_task_timeout`: 65 min).
    pub completed_task_timeout: Duration,
    /// Age after which a pending task is destroyed (XAPI's `pending_task_timeout`: 24 h).
    pub pending_task_timeout: Duration,
    /// Sessions kept per group by the session GC (`ocaml/xapi/xapi_globs.ml`): root sessions without an
    /// originator (`max_sessions`: 400), root sessions per originator (`max_sessions_per_originator`: 500), other
    /// users' sessions per user name (`max_sessions_per_user_name`: 500).
    pub max_sessions: usize,
    pub max_sessions_per_originator: usize,
    pub max_sessions_per_user_name: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_timeout: Duration::from_secs(24 * 3600),
            completed_task_timeout: Duration::from_secs(3900),
            pending_task_timeout: Duration::from_secs(24 * 3600),
            max_sessions: 400,
            max_sessions_per_originator: 500,
            max_sessions_per_user_name: 500,
        }
    }
}

/// The whole simulator.
pub struct Sim {
    pub db: Mutex<Db>,
    pub users: Mutex<Vec<User>>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub faults: Mutex<FaultSpec>,
    pub stats: Mutex<Stats>,
    pub config: Config,
    /// Woken on every database change, for `event.from`.
    pub changed: tokio::sync::Notify,
    /// Tasks a running HTTP handler is working for (cancellation is observed there).
    pub active_tasks: Mutex<HashSet<String>>,
    /// Hosts disabled with `auto_enable` false: XAPI keeps this in the host's local database (`Localdb`,
    /// `Constants.host_auto_enable`), not in the pool's, so they stay disabled across a reboot.
    pub auto_enable_off: Mutex<HashSet<String>>,
    /// The optional RRD data sources recorded per VM uuid (`VM.record_data_source`; [`crate::rrd`]).
    pub data_sources: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    /// When perfmon last raised each alarm, by `<object uuid>/<variable>` ([`crate::perfmon`]).
    pub perfmon_last: Mutex<HashMap<String, i64>>,
    /// The audit log's lines, oldest first ([`crate::hostlogs`]).
    pub audit: Mutex<std::collections::VecDeque<String>>,
    /// Where each host (by ref) answers ([`crate::pool_net`]); empty for a simulator not serving HTTP.
    pub endpoints: Mutex<BTreeMap<String, crate::pool_net::Endpoint>>,
    last_task_gc: Mutex<Instant>,
}

impl Sim {
    pub fn new(db: Db, users: Vec<User>, config: Config) -> Self {
        Sim {
            db: Mutex::new(db),
            users: Mutex::new(users),
            sessions: Mutex::new(HashMap::new()),
            faults: Mutex::new(FaultSpec::default()),
            stats: Mutex::new(Stats::default()),
            config,
            changed: tokio::sync::Notify::new(),
            active_tasks: Mutex::new(HashSet::new()),
            auto_enable_off: Mutex::new(HashSet::new()),
            audit: Mutex::new(std::collections::VecDeque::new()),
            data_sources: Mutex::new(HashMap::new()),
            perfmon_last: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(BTreeMap::new()),
            last_task_gc: Mutex::new(Instant::now()),
        }
    }

    /// Runs `f` on the database and wakes `event.from` waiters.
    pub fn write<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        let r = f(&mut self.db.lock());
        self.changed.notify_waiters();
        r
    }

    /// XAPI's task GC (`ocaml/xapi/db_gc_util.ml`, `timeout_tasks`), run at most once a second as calls arrive.
    pub fn gc_tasks(&self) {
        {
            let mut last = self.last_task_gc.lock();
            if last.elapsed() < Duration::from_secs(1) {
                return;
            }
            *last = Instant::now();
        }
        let (completed, pending) = (self.config.completed_task_timeout, self.config.pending_task_timeout);
        self.write(|db| crate::api::expire_tasks(db, completed, pending));
        self.gc_sessions();
    }

    /// XAPI's session GC (`ocaml/xapi/db_gc_util.ml`, `timeout_sessions` and `timeout_sessions_common`): sessions
    /// idle past the timeout go; then, per group, only the most recently active up to the group's limit stay.
    /// Root sessions (XAPI: `auth_user_name` empty or `root`) are grouped by originator, those without one forming
    /// the "external" group; other users' sessions are grouped by user name. (XAPI also spares sessions with
    /// unfinished tasks; the simulator does not link tasks to sessions, so it spares none.) Run with the task GC.
    pub fn gc_sessions(&self) {
        #[derive(Hash, PartialEq, Eq)]
        enum Group {
            External,
            Originator(String),
            UserName(String),
        }
        let timeout = self.config.session_timeout;
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.last_active.elapsed() <= timeout);
        let mut groups: HashMap<Group, Vec<(Instant, String)>> = HashMap::new();
        for s in sessions.values() {
            let root = s.local_superuser || s.user.is_empty() || s.user == "root";
            let group = match (root, s.originator.as_str()) {
                (true, "") => Group::External,
                (true, o) => Group::Originator(o.to_string()),
                (false, _) => Group::UserName(s.user.clone()),
            };
            groups.entry(group).or_default().push((s.last_active, s.reference.clone()));
        }
        for (group, mut members) in groups {
            let limit = match group {
                Group::External => self.config.max_sessions,
                Group::Originator(_) => self.config.max_sessions_per_originator,
                Group::UserName(_) => self.config.max_sessions_per_user_name,
            };
            if members.len() > limit {
                // Most recently active first; the rest go.
                members.sort_by_key(|m| std::cmp::Reverse(m.0));
                for (_, reference) in members.into_iter().skip(limit) {
                    sessions.remove(&reference);
                }
            }
        }
    }

    /// Logs a user in; returns the new session ref.
    pub fn login(&self, user: &str, password: &str, originator: &str) -> Result<String, XapiError> {
        let users = self.users.lock();
        let Some(u) = users.iter().find(|u| u.name == user && u.password == password) else {
            return Err(XapiError::new("SESSION_AUTHENTICATION_FAILED", &[user, "Authentication failure"]));
        };
        let reference = crate::db::new_ref();
        self.sessions.lock().insert(
            reference.clone(),
            Session {
                reference: reference.clone(),
                uuid: uuid::Uuid::new_v4().to_string(),
                user: u.name.clone(),
                role: u.role,
                local_superuser: u.local_superuser,
                subject: u.subject.clone(),
                originator: originator.to_string(),
                last_active: Instant::now(),
            },
        );
        Ok(reference)
    }

    /// The session behind `reference`, refreshing its idle timer; `SESSION_INVALID` if unknown or expired.
    pub fn session(&self, reference: &Value) -> Result<Session, XapiError> {
        let r = reference.as_str().unwrap_or_default();
        let mut sessions = self.sessions.lock();
        let expired = match sessions.get(r) {
            None => return Err(XapiError::new("SESSION_INVALID", &[r])),
            Some(s) => s.last_active.elapsed() > self.config.session_timeout,
        };
        if expired {
            sessions.remove(r);
            return Err(XapiError::new("SESSION_INVALID", &[r]));
        }
        let s = sessions.get_mut(r).ok_or_else(|| XapiError::new("SESSION_INVALID", &[r]))?;
        s.last_active = Instant::now();
        Ok(s.clone())
    }

    pub fn logout(&self, reference: &str) {
        self.sessions.lock().remove(reference);
    }

    /// Number of live (not expired) sessions.
    pub fn live_sessions(&self) -> usize {
        let timeout = self.config.session_timeout;
        self.sessions.lock().values().filter(|s| s.last_active.elapsed() <= timeout).count()
    }

    /// Counts one call and applies injected latency and failures for `name`.
    pub async fn before_call(&self, name: &str, counts: bool) -> Result<(), XapiError> {
        self.gc_tasks();
        if counts {
            *self.stats.lock().calls.entry(name.to_string()).or_default() += 1;
        }
        let (delay, failure) = {
            let mut f = self.faults.lock();
            let delay = f.latency_ms.get(name).or_else(|| f.latency_ms.get("*")).copied();
            let mut failure = None;
            for rule in f.fail.iter_mut().filter(|r| r.method == name) {
                rule.seen += 1;
                if rule.seen == rule.nth {
                    failure = Some(XapiError(rule.error.clone()));
                }
            }
            (delay, failure)
        };
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// How long the async operation `name` (synchronous name) runs, if made slow by [`FaultSpec::op_duration_ms`].
    pub fn op_duration(&self, name: &str) -> Option<Duration> {
        let f = self.faults.lock();
        f.op_duration_ms.get(name).or_else(|| f.op_duration_ms.get("*")).map(|ms| Duration::from_millis(*ms))
    }

    /// How long a rebooting host stays down ([`FaultSpec::host_boot_ms`]).
    pub fn host_boot(&self) -> Duration {
        Duration::from_millis(self.faults.lock().host_boot_ms.unwrap_or(300))
    }

    /// The master's toolstack restarting: sessions and tasks are not persisted by XAPI (`ocaml/idl/datamodel.ml`,
    /// `session` and `task` are `PersistNothing`), so every one of them is gone.
    pub fn restart_master(&self) {
        self.sessions.lock().clear();
        self.write(|db| {
            let tasks: Vec<String> = db.all("task").map(|(r, _)| r.clone()).collect();
            for t in tasks {
                db.destroy(&t);
            }
        });
    }

    /// The pool master's ref.
    pub fn master(&self) -> String {
        self.db
            .lock()
            .all("pool")
            .next()
            .and_then(|(_, p)| p.get("master").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string()
    }

    /// What a host that is not the master answers to a login or to a call made with an ordinary session:
    /// `HOST_IS_SLAVE [master address]` (`ocaml/xapi/xapi_session.ml`, `login_with_password`;
    /// `ocaml/xapi/session_check.ml`, `check`, `Non_master_login_on_slave`). `None` on the master, or where no host
    /// is named (a simulator not serving HTTP).
    pub fn slave_refusal(&self, here: &str) -> Option<XapiError> {
        let master = self.master();
        if here.is_empty() || here == master {
            return None;
        }
        let address = self.db.lock().field_str(&master, "address");
        Some(XapiError::new("HOST_IS_SLAVE", &[&address]))
    }

    /// The subject ref and role names of an external user, for `subject`/`role` records.
    pub fn is_null(r: &str) -> bool {
        r == NULL_REF || r.is_empty()
    }
}
