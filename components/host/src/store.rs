//! The store every instance of the app shares, for login throttling ([`xo_edge::auth::throttle`]): Spin's default
//! key-value store in the per-route Spin components (`key_value_stores = ["default"]` in `spin.toml`); in the
//! single-component bundle, a directory the host preopens, named by `XO_EDGE_STATE_DIR` (`wasmtime serve --dir`).
//! Without either, throttling falls back to the stateless floor of failed logins.

use xo_edge::auth::throttle::Store;

/// Opens the shared store, or says on stderr why there is none.
pub fn open() -> Option<Box<dyn Store>> {
    match open_store() {
        Ok(store) => Some(store),
        Err(why) => {
            eprintln!("login throttling: no shared store ({why}); failed logins only wait for the floor");
            None
        }
    }
}

#[cfg(feature = "spin-variables")]
fn open_store() -> Result<Box<dyn Store>, String> {
    spin_sdk::key_value::Store::open_default()
        .map(|store| Box::new(SpinStore(store)) as Box<dyn Store>)
        .map_err(|e| format!("Spin key-value store \"default\": {e}"))
}

#[cfg(feature = "spin-variables")]
struct SpinStore(spin_sdk::key_value::Store);

#[cfg(feature = "spin-variables")]
impl Store for SpinStore {
    fn keys(&self, prefix: &str) -> Vec<String> {
        match self.0.get_keys() {
            Ok(keys) => keys.into_iter().filter(|k| k.starts_with(prefix)).collect(),
            Err(e) => {
                eprintln!("login throttling: key-value store: {e}");
                Vec::new()
            }
        }
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.0.set(key, value) {
            eprintln!("login throttling: key-value store: {e}");
        }
    }

    fn delete(&self, key: &str) {
        if let Err(e) = self.0.delete(key) {
            eprintln!("login throttling: key-value store: {e}");
        }
    }
}

#[cfg(not(feature = "spin-variables"))]
fn open_store() -> Result<Box<dyn Store>, String> {
    let dir = std::env::var("XO_EDGE_STATE_DIR").map_err(|_| "XO_EDGE_STATE_DIR is not set".to_string())?;
    std::fs::metadata(&dir).map_err(|e| format!("XO_EDGE_STATE_DIR: {e}"))?;
    Ok(Box::new(DirStore(std::path::PathBuf::from(dir))))
}

/// One empty file per key, named by the key with `/` as `_` (the throttle's keys hold neither).
#[cfg(not(feature = "spin-variables"))]
struct DirStore(std::path::PathBuf);

#[cfg(not(feature = "spin-variables"))]
impl DirStore {
    fn path(&self, key: &str) -> std::path::PathBuf {
        self.0.join(key.replace('/', "_"))
    }
}

#[cfg(not(feature = "spin-variables"))]
impl Store for DirStore {
    /// A listing races the records other instances add and remove. Under `wasmtime serve`, an entry removed while
    /// the directory is read can end the listing with an error, leaving the rest of it unread. A short listing would
    /// undercount the failures and let a guess through: CI saw 4 of 12 parallel guesses pass a limit of 3, and 48
    /// parallel guesses did so about one run in two. So a listing that met an error is read again; with that, the
    /// 48-guess test has not failed since.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let mut last = Vec::new();
        for _ in 0..20 {
            let Ok(entries) = std::fs::read_dir(&self.0) else { continue };
            let mut keys = Vec::new();
            let mut whole = true;
            for entry in entries {
                match entry {
                    Ok(e) => keys.extend(e.file_name().into_string().ok().map(|name| name.replace('_', "/"))),
                    Err(_) => {
                        whole = false;
                        break;
                    }
                }
            }
            keys.retain(|key| key.starts_with(prefix));
            if whole {
                return keys;
            }
            last = keys;
        }
        eprintln!("login throttling: the state directory could not be listed whole");
        last
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(e) = std::fs::write(self.path(key), value) {
            eprintln!("login throttling: state directory: {e}");
        }
    }

    fn delete(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }
}
