//! TCP: a listener that records accepted connections where they land, and a connect probe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Protocol, Type};

use super::{is_timeout, push, Recorder, SendOpts, POLL};
use crate::error::{Context, Result};
use crate::netns::Netns;

/// One connection accepted by a [`TcpListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The peer as seen by the listener.
    pub from: SocketAddr,
    /// The first bytes the peer sent (up to 512, within 200 ms).
    pub data: Vec<u8>,
}

/// A TCP listener in a namespace that accepts and records every connection.
#[derive(Debug)]
pub struct TcpListener {
    addr: SocketAddr,
    rec: Recorder<Accepted>,
}

impl TcpListener {
    /// Binds and listens on `addr` inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
        let rec = Recorder::start(
            ns,
            move || -> Result<StdListener> {
                let l = StdListener::bind(addr).context(|| format!("tcp bind {addr}"))?;
                l.set_nonblocking(true)
                    .context(|| "O_NONBLOCK".to_string())?;
                Ok(l)
            },
            |l: StdListener, stop: &AtomicBool, items: &Mutex<Vec<Accepted>>| {
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((mut s, from)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                            let mut buf = [0u8; 512];
                            let n = s.read(&mut buf).unwrap_or(0);
                            push(
                                items,
                                Accepted {
                                    from,
                                    data: buf[..n].to_vec(),
                                },
                            );
                        }
                        Err(e) if is_timeout(&e) => std::thread::sleep(POLL / 4),
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            },
        )?;
        Ok(TcpListener { addr, rec })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.rec.items()
    }

    /// Number of connections accepted so far.
    pub fn count(&self) -> usize {
        self.rec.count_where(|_| true)
    }

    /// Waits until `n` connections were accepted or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        self.rec.wait_for(n, timeout, |_| true)
    }

    /// Forgets recorded connections.
    pub fn clear(&self) {
        self.rec.clear()
    }
}

/// What a connect attempt saw from the sender's side. (Whether the connection *arrived* is
/// what the listener says.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The handshake completed.
    Connected,
    /// `ECONNREFUSED` (a reset, or an ICMP port-unreachable such as a reject rule).
    Refused,
    /// `EHOSTUNREACH` / `ENETUNREACH`.
    Unreachable,
    /// `EPERM` / `EACCES` (dropped by a local firewall).
    Denied,
    /// No answer within the time bound.
    TimedOut,
    /// Any other error.
    Other(String),
}

/// Connects from `ns` to `to`, sends `payload` when connected, and closes.
pub fn tcp_connect(
    ns: &Netns,
    to: SocketAddr,
    payload: &[u8],
    opts: &SendOpts,
) -> Result<ConnectOutcome> {
    let opts = opts.clone();
    let payload = payload.to_vec();
    ns.run(move || -> Result<ConnectOutcome> {
        let s = opts.socket(&to, Type::STREAM, Protocol::TCP)?;
        Ok(match s.connect_timeout(&to.into(), opts.timeout()) {
            Ok(()) => {
                let mut s: std::net::TcpStream = s.into();
                let _ = s.write_all(&payload);
                let _ = s.flush();
                ConnectOutcome::Connected
            }
            Err(e) => classify(&e),
        })
    })?
}

/// Maps a connect error onto a [`ConnectOutcome`].
pub fn classify(e: &std::io::Error) -> ConnectOutcome {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ConnectOutcome::Refused,
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => ConnectOutcome::Unreachable,
        Some(libc::EPERM) | Some(libc::EACCES) => ConnectOutcome::Denied,
        Some(libc::ETIMEDOUT) | Some(libc::EINPROGRESS) | Some(libc::EAGAIN) => {
            ConnectOutcome::TimedOut
        }
        _ if e.kind() == std::io::ErrorKind::TimedOut => ConnectOutcome::TimedOut,
        _ => ConnectOutcome::Other(e.to_string()),
    }
}
