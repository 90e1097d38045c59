//! Login throttling: failed password logins are counted per user name and per client in a store that every
//! instance shares (Spin's key-value store; a directory for the single-component bundle), so that a password
//! guesser gets a few guesses per window however many connections it opens.
//!
//! The store has no atomic increment (Spin's `key-value@2.0.0`, which every Spin since 2.0 has), so a counter
//! would lose updates under parallel guesses. Instead each attempt first writes a record of its own (a key naming
//! its time and a random nonce), then counts the records of its user name and client: an attempt that sees more
//! than the limit is refused and removes its record. Ordered by when they were written, the k-th attempt sees at
//! least k records, so no more than the limit get through, however many run at once. A successful login removes
//! its record (only failures count); records older than the window are removed by whoever counts them.
//!
//! User names and clients are hashed into a fixed number of slots, so the store never holds a name, and a guesser
//! spraying names fills at most `limit` records per slot: two names sharing a slot share a limit.

use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// A key-value store shared by every instance of the app. Failures to read or write are the store's to swallow:
/// throttling degrades to the stateless floor, it never refuses a login because the store is down.
pub trait Store {
    /// Every key that starts with `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String>;
    fn set(&self, key: &str, value: &[u8]);
    fn delete(&self, key: &str);
}

/// How many failed logins a window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed logins per user name (0: no limit).
    pub per_user: u32,
    /// Failed logins per client address (0: no limit).
    pub per_client: u32,
    /// Seconds a record counts.
    pub window: u64,
}

/// Slots per kind (user names, clients).
pub const SLOTS: u64 = 4096;

/// Expired records one attempt removes at most (the rest are left to later attempts).
const SWEEP: usize = 64;

/// The root of every key.
pub const PREFIX: &str = "xo-edge/login/";

/// An attempt let through: its records, to remove if the login succeeds.
#[derive(Debug, Default)]
pub struct Attempt {
    records: Vec<String>,
}

/// The key prefix of `id`'s slot of `kind` ("user" or "client"), ending in `/`.
fn slot(kind: &str, id: &str) -> String {
    let digest = Sha256::new().chain_update(kind).chain_update([0]).chain_update(id).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{PREFIX}{kind}/{:03x}/", u64::from_be_bytes(first) % SLOTS)
}

/// When a record was written, from its key (`<slot><seconds>-<nonce>`).
fn written(slot: &str, key: &str) -> Option<u64> {
    key.strip_prefix(slot)?.split('-').next()?.parse().ok()
}

fn nonce() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness, the clock's nanoseconds keep records of one second apart well enough.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client a request came from, as Spin reports it in `spin-client-addr` (the last value: Spin appends its own
/// after whatever the client sent). IPv6 clients are counted per /64, the block one subscriber usually holds.
pub fn client_id(spin_client_addr: &[&str]) -> Option<String> {
    let raw = spin_client_addr.last()?.trim();
    let ip = raw.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| raw.parse::<IpAddr>()).ok()?;
    Some(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    })
}

/// Before a password check: records the attempt against the user name and the client, then refuses it (removing
/// its records) with the seconds until the oldest counted record expires when either has more records in the
/// window than its limit allows. A let-through attempt counts as a failure until [`succeeded`] removes it.
pub fn begin(store: &dyn Store, limits: Limits, user: &str, client: Option<&str>, now: u64) -> Result<Attempt, u64> {
    let mut slots = vec![(slot("user", user), limits.per_user)];
    if let Some(client) = client {
        slots.push((slot("client", client), limits.per_client));
    }
    slots.retain(|(_, limit)| *limit > 0);
    let nonce = nonce();
    let records: Vec<String> = slots.iter().map(|(slot, _)| format!("{slot}{now}-{nonce}")).collect();
    for record in &records {
        store.set(record, b"");
    }
    let mut wait = None;
    for (slot, limit) in &slots {
        let mut counted = Vec::new();
        let mut expired = Vec::new();
        for key in store.keys(slot) {
            match written(slot, &key) {
                Some(t) if t.saturating_add(limits.window) > now => counted.push(t),
                _ => expired.push(key),
            }
        }
        for key in expired.into_iter().take(SWEEP) {
            store.delete(&key);
        }
        if counted.len() > *limit as usize {
            counted.sort_unstable();
            let oldest = counted[counted.len() - *limit as usize - 1];
            let after = oldest.saturating_add(limits.window).saturating_sub(now).max(1);
            wait = Some(wait.map_or(after, |w: u64| w.max(after)));
        }
    }
    match wait {
        Some(after) => {
            for record in &records {
                store.delete(record);
            }
            Err(after)
        }
        None => Ok(Attempt { records }),
    }
}

/// After a successful login (or a failure that was no guess, such as XAPI being unreachable): removes the records
/// [`begin`] wrote, so only failures count.
pub fn succeeded(store: &dyn Store, attempt: Attempt) {
    for record in &attempt.records {
        store.delete(record);
    }
}

/// A store in memory, for one instance (tests, fuzzing): shared by nothing else.
#[derive(Debug, Default)]
pub struct MemoryStore(std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>);

impl MemoryStore {
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl Store for MemoryStore {
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.0.borrow().keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }
    fn set(&self, key: &str, value: &[u8]) {
        self.0.borrow_mut().insert(key.to_string(), value.to_vec());
    }
    fn delete(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Memory = MemoryStore;

    const LIMITS: Limits = Limits { per_user: 3, per_client: 5, window: 60 };

    #[test]
    fn a_user_gets_its_failures_per_window_then_waits_for_the_oldest_to_expire() {
        let store = Memory::default();
        for t in [1000, 1010, 1020] {
            begin(&store, LIMITS, "root", None, t).unwrap();
        }
        assert_eq!(begin(&store, LIMITS, "root", None, 1030).unwrap_err(), 30);
        assert_eq!(begin(&store, LIMITS, "root", None, 1059).unwrap_err(), 1);
        // Refused attempts leave nothing; another user name is not affected.
        assert_eq!(store.keys(PREFIX).len(), 3);
        begin(&store, LIMITS, "admin", None, 1030).unwrap();
        // The oldest record's expiry lets one more through, and it is swept.
        begin(&store, LIMITS, "root", None, 1060).unwrap();
        assert_eq!(begin(&store, LIMITS, "root", None, 1061).unwrap_err(), 9);
        assert_eq!(store.keys(&slot("user", "root")).len(), 3);
    }

    #[test]
    fn successes_remove_their_records() {
        let store = Memory::default();
        for _ in 0..10 {
            let attempt = begin(&store, LIMITS, "root", Some("192.0.2.1"), 1000).unwrap();
            succeeded(&store, attempt);
        }
        assert!(store.keys(PREFIX).is_empty());
    }

    #[test]
    fn a_client_is_limited_across_user_names() {
        let store = Memory::default();
        for i in 0..5 {
            begin(&store, LIMITS, &format!("user{i}"), Some("192.0.2.1"), 1000).unwrap();
        }
        assert!(begin(&store, LIMITS, "user9", Some("192.0.2.1"), 1001).is_err());
        begin(&store, LIMITS, "user9", Some("192.0.2.2"), 1001).unwrap();
        // A refused attempt counts nothing: user9 still has two failures left.
        for _ in 0..2 {
            begin(&store, LIMITS, "user9", Some("192.0.2.3"), 1001).unwrap();
        }
        assert!(begin(&store, LIMITS, "user9", Some("192.0.2.4"), 1001).is_err());
    }

    /// Attempts that write before any of them counts (the worst interleaving of parallel guesses) still let no more
    /// than the limit through: the k-th writer sees k records.
    #[test]
    fn interleaved_attempts_never_exceed_the_limit() {
        let store = Memory::default();
        let slot = slot("user", "root");
        // Ten attempts write their records before any counts ...
        let records: Vec<String> = (0..10).map(|i| format!("{slot}1000-{i:016x}")).collect();
        for r in &records {
            store.set(r, b"");
        }
        // ... then each counts what it sees: all ten, so all are refused (and remove their records).
        let seen = store.keys(&slot).len();
        assert!(seen > LIMITS.per_user as usize);
        for r in &records {
            store.delete(r);
        }
        // Sequentially interleaved (write, count) pairs: exactly the limit gets through.
        let through = (0..10).filter(|_| begin(&store, LIMITS, "root", None, 1000).is_ok()).count();
        assert_eq!(through, LIMITS.per_user as usize);
    }

    #[test]
    fn zero_means_no_limit_and_foreign_keys_are_swept() {
        let store = Memory::default();
        let off = Limits { per_user: 0, per_client: 0, window: 60 };
        for _ in 0..100 {
            begin(&store, off, "root", Some("192.0.2.1"), 1000).unwrap();
        }
        assert!(store.is_empty());
        let slot = slot("user", "root");
        store.set(&format!("{slot}garbage"), b"");
        store.set(&format!("{slot}10-00"), b"");
        begin(&store, LIMITS, "root", None, 1000).unwrap();
        assert_eq!(store.keys(&slot).len(), 1, "unreadable and expired records are removed");
    }

    #[test]
    fn slots_are_bounded_and_hold_no_name() {
        let slots: std::collections::HashSet<String> = (0..20_000).map(|i| slot("user", &format!("u{i}"))).collect();
        assert!(slots.len() as u64 <= SLOTS);
        assert!(slots.iter().all(|k| k.len() < 32 && k.starts_with("xo-edge/login/user/")));
        assert_ne!(slot("user", "x"), slot("client", "x"));
        let store = Memory::default();
        begin(&store, LIMITS, "root", Some("192.0.2.1"), 1000).unwrap();
        let keys = store.keys(PREFIX);
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| !k.contains("root") && !k.contains("192.0")), "{keys:?}");
    }

    #[test]
    fn client_ids() {
        assert_eq!(client_id(&["192.0.2.1:5555"]).as_deref(), Some("192.0.2.1"));
        // The client's own header comes first; Spin's is the last.
        assert_eq!(client_id(&["203.0.113.9", "192.0.2.1:5555"]).as_deref(), Some("192.0.2.1"));
        assert_eq!(client_id(&["[2001:db8:1:2:3:4:5:6]:443"]).as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(client_id(&["[::ffff:192.0.2.7]:1"]).as_deref(), Some("192.0.2.7"));
        assert_eq!(client_id(&[]), None);
        assert_eq!(client_id(&["not an address"]), None);
    }
}
