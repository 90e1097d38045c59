//! The pool's hosts on the network: every host of the pool answers on an address of its own, as XAPI's hosts do,
//! and can be taken off the network (a host that died) and brought back.
//!
//! - The master listens where the simulator was asked to; on a loopback address every other host listens on the
//!   next loopback addresses, same port (`127.0.0.1:P` → host 2 on `127.0.0.2:P`, …). Each host's `address` (and
//!   its management PIF's `IP`) is the address it listens on, so what XAPI answers with a host address (a
//!   redirect, `HOST_IS_SLAVE`) points at the simulator's listener for that host.
//! - XAPI answers on 443 with `https://<address>` (`ocaml/xapi/importexport.ml`, `return_302_redirect`); the
//!   simulator speaks plain HTTP on its own port, so its redirects are `http://<address>:<port>`.
//! - A host that is down refuses connections (its listener is closed) and the connections it had accepted fail on
//!   their next read or write, as a dead host's do.
//!
//! Which host a request reached is [`Here`], an extension every route of that host's router carries.

use crate::sim::Sim;
use crate::value::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The host (its ref) a request reached.
#[derive(Debug, Clone)]
pub struct Here(pub String);

/// Whether a host is on the network, and how many times its link changed (connections accepted before a change
/// die with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub generation: u64,
}

/// Where a host answers.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub link: watch::Sender<Link>,
}

/// The address the `n`th host (0: the master) listens on, given the master's.
fn address_of(master: SocketAddr, n: usize) -> Option<SocketAddr> {
    if n == 0 {
        return Some(master);
    }
    match master.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let next = u32::from(ip).checked_add(u32::try_from(n).ok()?)?;
            let next = Ipv4Addr::from(next);
            next.is_loopback().then_some(SocketAddr::new(IpAddr::V4(next), master.port()))
        }
        _ => None,
    }
}

/// Binds a listener for every host of the pool: the master on `first`, the others on the next loopback addresses
/// (none where `first` is not a loopback address). Records the endpoints in `sim` and each host's address in the
/// database. Fails if one of the addresses is taken (the caller picks another port).
pub async fn bind(sim: &Arc<Sim>, first: TcpListener) -> std::io::Result<Vec<(String, HostListener)>> {
    let master_addr = first.local_addr()?;
    let hosts: Vec<String> = {
        let db = sim.db.lock();
        let master = db.all("pool").next().and_then(|(_, p)| p.get("master").and_then(Value::as_str)).map(String::from);
        let mut hosts: Vec<String> = db.all("host").map(|(r, _)| r.clone()).collect();
        hosts.sort_by_key(|h| (Some(h) != master.as_ref(), db.field_str(h, "name_label")));
        hosts
    };
    let mut first = Some(first);
    let mut bound = Vec::new();
    for (n, host) in hosts.iter().enumerate() {
        let listener = match first.take() {
            Some(l) => l,
            None => match address_of(master_addr, n) {
                Some(addr) => TcpListener::bind(addr).await?,
                None => continue,
            },
        };
        let addr = listener.local_addr()?;
        let (link, _) = watch::channel(Link { up: true, generation: 0 });
        bound.push((host.clone(), HostListener { addr, listener: Some(listener), link: link.subscribe() }));
        sim.endpoints.lock().insert(host.clone(), Endpoint { addr, link });
        let ip = addr.ip().to_string();
        sim.write(|db| {
            db.set(host, "address", Value::str(ip.clone()));
            let management: Vec<String> = db
                .all("PIF")
                .filter(|(_, p)| {
                    p.get("host").and_then(Value::as_str) == Some(host.as_str())
                        && p.get("management").and_then(Value::as_bool) == Some(true)
                })
                .map(|(r, _)| r.clone())
                .collect();
            for pif in management {
                db.set(&pif, "IP", Value::str(ip.clone()));
            }
        });
    }
    Ok(bound)
}

/// Takes `host` off the network (`up` false) or puts it back.
pub fn set_link(sim: &Sim, host: &str, up: bool) -> bool {
    match sim.endpoints.lock().get(host) {
        Some(e) => {
            e.link.send_modify(|l| {
                l.up = up;
                l.generation += 1;
            });
            true
        }
        None => false,
    }
}

/// Whether `host` is on the network.
pub fn is_up(sim: &Sim, host: &str) -> bool {
    sim.endpoints.lock().get(host).is_some_and(|e| e.link.borrow().up)
}

/// The base URL of `host`'s listener, `http://<address>:<port>`.
pub fn url_of(sim: &Sim, host: &str) -> Option<String> {
    sim.endpoints.lock().get(host).map(|e| format!("http://{}", e.addr))
}

/// A host's listener: closed while the host is down, bound again when it comes back.
pub struct HostListener {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    link: watch::Receiver<Link>,
}

impl axum::serve::Listener for HostListener {
    type Io = HostIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (HostIo, SocketAddr) {
        loop {
            let link = *self.link.borrow_and_update();
            if !link.up {
                // Closed: connections are refused until the host is back.
                self.listener = None;
                let _ = self.link.changed().await;
                continue;
            }
            if self.listener.is_none() {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => self.listener = Some(l),
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let Some(listener) = self.listener.as_ref() else { continue };
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        let _ = stream.set_nodelay(true);
                        return (HostIo { stream, generation: link.generation, link: self.link.clone() }, peer);
                    }
                }
                _ = self.link.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A connection to a host: it fails once the host's link changed after it was accepted.
pub struct HostIo {
    stream: TcpStream,
    generation: u64,
    link: watch::Receiver<Link>,
}

impl HostIo {
    fn broken(&self) -> Option<std::io::Error> {
        (self.link.borrow().generation != self.generation)
            .then(|| std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the host went down"))
    }
}

impl AsyncRead for HostIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HostIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_hosts_take_the_next_loopback_addresses() {
        let master: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(address_of(master, 0), Some(master));
        assert_eq!(address_of(master, 2), Some("127.0.0.3:4000".parse().unwrap()));
        assert_eq!(address_of("0.0.0.0:4000".parse().unwrap(), 1), None);
        assert_eq!(address_of("127.255.255.255:4000".parse().unwrap(), 1), None);
    }
}
