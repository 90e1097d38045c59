//! The pool's hosts as the edge reaches them: which hosts it may talk to, how it reaches one, and where an XAPI
//! redirect may lead.
//!
//! A real pool is several hosts. XAPI sends the edge to another host in two ways: a handler answers `302` to the
//! host that sees the storage (`ocaml/xapi/importexport.ml`, `return_302_redirect`), and a host that is not (or no
//! longer) the master answers `HOST_IS_SLAVE [master address]`. Both name a host by its address; the edge reaches
//! it the way it reaches `xapi_url` (same scheme and port, as XAPI's hosts all listen alike), and only if:
//!
//! - the [`Fence`] allows it: `xapi_url`'s host, or the `pool_hosts` pattern (the same pattern Spin's
//!   `allowed_outbound_hosts` is given, so the edge refuses what Spin would, and does so under any runtime);
//! - for a redirect, the address is also one of the pool's hosts (`host.address`), read from XAPI when the redirect
//!   comes: a host XAPI itself does not list is never a target, whatever the fence allows.
//!
//! A redirect only says *which host*: the request goes there with its own path and query, never the `Location`'s.

use ipnet::IpNet;
use std::net::IpAddr;

/// Most redirects followed for one request (XAPI redirects once; more is a loop or a misconfigured pool).
pub const MAX_REDIRECTS: usize = 3;

/// The default `pool_hosts`: RFC 6666's discard-only prefix, an address block that reaches nothing, in the one form
/// every released Spin accepts for `allowed_outbound_hosts` (a template must resolve to a valid pattern).
pub const NO_OTHER_HOSTS: &str = "https://100::/64:443";

/// Host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Net(IpNet),
    /// `*.example.org`: any name ending in `.example.org`.
    Suffix(String),
    Name(String),
}

/// Port part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

/// One `scheme://host[:port]` pattern, in the syntax of Spin's `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// `None`: any scheme (`*://`).
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Pattern {
    /// Parses a pattern as Spin does: `<scheme>://<host>[:<port>]`, with `*` for any scheme, host or port, a CIDR
    /// range or `*.<domain>` for hosts, `a..b` for a port range (end excluded); without a port, the scheme's.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://").ok_or_else(|| format!("{text:?} has no scheme"))?;
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = port.strip_suffix('/').unwrap_or(port);
        if port.contains('/') {
            return Err(format!("{text:?} has a path"));
        }
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            _ => return Err(format!("{text:?}: the scheme must be http, https or *")),
        };
        let port = match port {
            "" => {
                let p = scheme.as_deref().and_then(default_port).ok_or_else(|| format!("{text:?} needs a port"))?;
                PortPattern::Range(p, p)
            }
            "*" => PortPattern::Any,
            p => match p.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (a.parse::<u16>(), b.parse::<u16>());
                    match (a, b) {
                        (Ok(a), Ok(b)) if a < b => PortPattern::Range(a, b - 1),
                        _ => return Err(format!("{text:?}: bad port range")),
                    }
                }
                None => {
                    let p = p.parse::<u16>().map_err(|_| format!("{text:?}: bad port"))?;
                    PortPattern::Range(p, p)
                }
            },
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Ok(net) = host.parse::<IpNet>() {
            HostPattern::Net(net.trunc())
        } else if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            HostPattern::Net(IpNet::from(ip))
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(format!("{text:?}: bad host pattern"));
            }
            HostPattern::Suffix(format!(".{}", domain.to_ascii_lowercase()))
        } else if host.is_empty() || host.contains('*') || host.contains('/') {
            return Err(format!("{text:?}: bad host"));
        } else {
            HostPattern::Name(host.to_ascii_lowercase())
        };
        Ok(Pattern { scheme, host, port })
    }

    /// Whether `url` (`scheme://host[:port]`, anything after it ignored) matches.
    pub fn allows(&self, url: &url::Url) -> bool {
        let scheme = url.scheme();
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let Some(port) = url.port_or_known_default() else { return false };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(a, b) => (a..=b).contains(&port),
        };
        let host_ok = match (&self.host, url.host()) {
            (HostPattern::Any, Some(_)) => true,
            (HostPattern::Net(net), Some(url::Host::Ipv4(ip))) => net.contains(&IpAddr::V4(ip)),
            (HostPattern::Net(net), Some(url::Host::Ipv6(ip))) => net.contains(&IpAddr::V6(ip)),
            (HostPattern::Suffix(s), Some(url::Host::Domain(d))) => d.to_ascii_lowercase().ends_with(s.as_str()),
            (HostPattern::Name(n), Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case(n),
            _ => false,
        };
        port_ok && host_ok
    }
}

/// Where the edge may send requests: `xapi_url`, and what `pool_hosts` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    xapi_url: url::Url,
    pool_hosts: Pattern,
}

impl Fence {
    pub fn new(xapi_url: &str, pool_hosts: &str) -> Result<Fence, String> {
        let xapi_url = url::Url::parse(xapi_url).map_err(|e| format!("xapi_url: {e}"))?;
        if xapi_url.host().is_none() {
            return Err("xapi_url has no host".into());
        }
        let pool_hosts = Pattern::parse(pool_hosts).map_err(|e| format!("pool_hosts: {e}"))?;
        Ok(Fence { xapi_url, pool_hosts })
    }

    /// The configured `xapi_url`, without a trailing slash.
    pub fn xapi_url(&self) -> String {
        self.xapi_url.as_str().trim_end_matches('/').to_string()
    }

    /// The base URL of the host at `address`, reached as `xapi_url` is (its scheme and port), if the fence
    /// allows it.
    pub fn host_base(&self, address: &str) -> Result<String, String> {
        let mut url = self.xapi_url.clone();
        let host = match address.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => address.to_string(),
        };
        url.set_host(Some(&host)).map_err(|_| format!("{address:?} is not a host address"))?;
        if !self.allows(&url) {
            return Err(format!(
                "{address} is not allowed: it is neither xapi_url's host nor within pool_hosts (set pool_hosts, and \
                 Spin's allowed_outbound_hosts with it, to cover every host of the pool)"
            ));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    /// The addresses `pool_hosts` covers when it is a small address range (64 hosts at most): where to look for the
    /// master when `xapi_url` does not answer and nothing better is known (a login, with no token yet).
    pub fn addresses(&self) -> Vec<String> {
        match &self.pool_hosts.host {
            HostPattern::Net(net) if net.prefix_len() + 6 >= net.max_prefix_len() => {
                net.hosts().map(|ip| ip.to_string()).collect()
            }
            _ => Vec::new(),
        }
    }

    fn allows(&self, url: &url::Url) -> bool {
        let same = url.scheme() == self.xapi_url.scheme()
            && url.host() == self.xapi_url.host()
            && url.port_or_known_default() == self.xapi_url.port_or_known_default();
        same || self.pool_hosts.allows(url)
    }
}

/// Why a redirect is not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The `Location` is not a URL with a host.
    Unreadable,
    /// The host named is not a host of the pool.
    NotInPool(String),
    /// The fence does not allow that host (see [`Fence::host_base`]).
    Fenced(String),
    /// The request came back to a host it had already been sent from, or went past [`MAX_REDIRECTS`].
    Loop,
}

impl Refused {
    /// What the client is told.
    pub fn reason(&self) -> String {
        match self {
            Refused::Unreadable => "XAPI redirected to a location that is not a URL".into(),
            Refused::NotInPool(h) => format!("XAPI redirected to {h}, which is not a host of this pool: not followed"),
            Refused::Fenced(why) => format!("XAPI redirected to another host of the pool, but {why}"),
            Refused::Loop => "XAPI's hosts redirected the request in a loop".into(),
        }
    }
}

/// The host a `Location` names (an address or a name, IPv6 without brackets).
pub fn location_host(location: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    match url.host()? {
        url::Host::Ipv6(ip) => Some(ip.to_string()),
        h => Some(h.to_string()),
    }
}

/// Decides where a handler's `302` to `location` leads: the base URL of the pool host it names. `pool` lists the
/// pool's host addresses; `visited` the bases the request was already sent to (it gets the new one).
pub fn follow(fence: &Fence, location: &str, pool: &[String], visited: &mut Vec<String>) -> Result<String, Refused> {
    follow_with(location, pool, visited, |a| fence.host_base(a))
}

/// [`follow`], with the fence's [`Fence::host_base`] given as a function.
pub fn follow_with(
    location: &str,
    pool: &[String],
    visited: &mut Vec<String>,
    host_base: impl Fn(&str) -> Result<String, String>,
) -> Result<String, Refused> {
    let host = location_host(location).ok_or(Refused::Unreadable)?;
    if !pool.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        return Err(Refused::NotInPool(host));
    }
    let base = host_base(&host).map_err(Refused::Fenced)?;
    if visited.contains(&base) || visited.len() > MAX_REDIRECTS {
        return Err(Refused::Loop);
    }
    visited.push(base.clone());
    Ok(base)
}

/// The addresses of the pool's hosts, from `host.get_all_records` (only their `address`).
pub fn addresses_of(records: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Host {
        #[serde(default)]
        address: String,
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        result: std::collections::HashMap<String, Host>,
    }
    let reply: Reply = serde_json::from_slice(records).map_err(|e| format!("host records: {e}"))?;
    let mut all: Vec<String> = reply.result.into_values().map(|h| h.address).filter(|a| !a.is_empty()).collect();
    all.sort();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_read_as_spin_reads_them() {
        let p = Pattern::parse("https://192.0.2.0/28").unwrap();
        assert!(p.allows(&url("https://192.0.2.14")));
        assert!(!p.allows(&url("https://192.0.2.16")));
        assert!(!p.allows(&url("http://192.0.2.14")), "another scheme");
        assert!(!p.allows(&url("https://192.0.2.14:8443")), "another port");
        let p = Pattern::parse("http://127.0.0.0/24:4000..4010").unwrap();
        assert!(p.allows(&url("http://127.0.0.9:4009")) && !p.allows(&url("http://127.0.0.9:4010")));
        let p = Pattern::parse("*://*.pool.example:*").unwrap();
        assert!(p.allows(&url("https://xcp1.pool.example:443")) && !p.allows(&url("https://pool.example")));
        assert!(Pattern::parse("https://xcp1.pool.example").unwrap().allows(&url("https://XCP1.pool.example")));
        assert!(Pattern::parse("https://[2001:db8::1]:443").unwrap().allows(&url("https://[2001:db8::1]")));
        assert!(Pattern::parse("https://[2001:db8::1]").is_err(), "Spin wants a port after an IPv6 address");
        // The default reaches nothing a pool could have.
        let none = Pattern::parse(NO_OTHER_HOSTS).unwrap();
        for u in ["https://192.0.2.1", "https://[::1]", "https://[2001:db8::1]", "https://xcp.example"] {
            assert!(!none.allows(&url(u)), "{u}");
        }
        for bad in ["192.0.2.1", "ftp://x", "https://x/path", "https://*x", "*://127.0.0.0/24", "https://a:b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_reached_like_xapi_url_and_only_inside_the_fence() {
        let fence = Fence::new("https://192.0.2.10", "https://192.0.2.0/28").unwrap();
        assert_eq!(fence.host_base("192.0.2.11").unwrap(), "https://192.0.2.11");
        assert!(fence.host_base("192.0.2.99").is_err());
        let fence = Fence::new("http://127.0.0.1:4000", NO_OTHER_HOSTS).unwrap();
        assert_eq!(fence.host_base("127.0.0.1").unwrap(), "http://127.0.0.1:4000");
        assert!(fence.host_base("127.0.0.2").is_err(), "the default allows xapi_url's host only");
        let fence = Fence::new("http://127.0.0.1:4000", "http://127.0.0.0/24:4000").unwrap();
        assert_eq!(fence.host_base("127.0.0.2").unwrap(), "http://127.0.0.2:4000");
        assert!(fence.addresses().is_empty(), "too many to try");
        let fence = Fence::new("https://192.0.2.10", "https://192.0.2.8/29").unwrap();
        assert_eq!(fence.addresses().len(), 6);
        assert_eq!(fence.addresses()[0], "192.0.2.9");
        assert!(Fence::new("https://a.example", "https://*.example").unwrap().addresses().is_empty());
    }

    #[test]
    fn redirects_lead_to_pool_hosts_only_and_never_in_a_loop() {
        let fence = Fence::new("http://127.0.0.1:4000", "http://127.0.0.0/24:4000").unwrap();
        let pool = vec!["127.0.0.1".to_string(), "127.0.0.2".to_string()];
        let mut visited = vec![fence.xapi_url()];
        let to2 = "https://127.0.0.2/export_raw_vdi?vdi=x&session_id=OpaqueRef:s";
        assert_eq!(follow(&fence, to2, &pool, &mut visited), Ok("http://127.0.0.2:4000".into()));
        assert_eq!(follow(&fence, "https://127.0.0.1/x", &pool, &mut visited), Err(Refused::Loop));
        let mut visited = vec![fence.xapi_url()];
        assert_eq!(
            follow(&fence, "https://127.0.0.3/x", &pool, &mut visited),
            Err(Refused::NotInPool("127.0.0.3".into()))
        );
        assert_eq!(follow(&fence, "/relative", &pool, &mut visited), Err(Refused::Unreadable));
        let outside = vec!["127.0.0.1".to_string(), "192.0.2.7".to_string()];
        assert!(matches!(follow(&fence, "https://192.0.2.7/x", &outside, &mut visited), Err(Refused::Fenced(_))));
        assert!(!Refused::NotInPool("h".into()).reason().contains("session"));
    }

    #[test]
    fn host_addresses_come_from_the_records() {
        let body = br#"{"result":{"OpaqueRef:a":{"address":"192.0.2.2","name_label":"b"},"OpaqueRef:b":{"address":"192.0.2.1"}}}"#;
        assert_eq!(addresses_of(body).unwrap(), ["192.0.2.1", "192.0.2.2"]);
    }
}
