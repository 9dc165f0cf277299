//! UDP: a listener that records every datagram where it lands, and bounded senders.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Protocol, Type};

use super::{is_timeout, push, Recorder, SendOpts, POLL};
use crate::error::{Context, Error, Result};
use crate::netns::{Netns, NsThread};

/// One datagram received by a [`UdpListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender as seen by the receiver.
    pub from: SocketAddr,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A UDP socket bound in a namespace that records every datagram it receives.
#[derive(Debug)]
pub struct UdpListener {
    addr: SocketAddr,
    rec: Recorder<Datagram>,
}

impl UdpListener {
    /// Binds `addr` inside `ns` and starts recording.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpListener> {
        Self::start_inner(ns, addr, None)
    }

    /// Binds `0.0.0.0:port` / `[::]:port` inside `ns`, joins multicast `group` on interface
    /// `ifname`, and starts recording.
    pub fn start_multicast(
        ns: &Netns,
        group: std::net::IpAddr,
        port: u16,
        ifname: &str,
    ) -> Result<UdpListener> {
        Self::start_inner(ns, SocketAddr::new(group, port), Some(ifname.to_string()))
    }

    fn start_inner(ns: &Netns, addr: SocketAddr, join: Option<String>) -> Result<UdpListener> {
        let rec = Recorder::start(
            ns,
            move || -> Result<UdpSocket> {
                let bind = match (&join, addr) {
                    (Some(_), SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], addr.port())),
                    (Some(_), SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], addr.port())),
                    (None, a) => a,
                };
                let s = UdpSocket::bind(bind).context(|| format!("udp bind {bind}"))?;
                if let Some(ifname) = &join {
                    let idx =
                        crate::sys::if_index(ifname).context(|| format!("ifindex of {ifname}"))?;
                    match addr.ip() {
                        std::net::IpAddr::V4(g) => {
                            let sock = socket2::SockRef::from(&s);
                            sock.join_multicast_v4_n(
                                &g,
                                &socket2::InterfaceIndexOrAddress::Index(idx),
                            )
                            .context(|| format!("join {g}"))?;
                        }
                        std::net::IpAddr::V6(g) => s
                            .join_multicast_v6(&g, idx)
                            .context(|| format!("join {g}"))?,
                    }
                }
                s.set_read_timeout(Some(POLL))
                    .context(|| "SO_RCVTIMEO".to_string())?;
                Ok(s)
            },
            |s: UdpSocket, stop: &AtomicBool, items: &Mutex<Vec<Datagram>>| {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    match s.recv_from(&mut buf) {
                        Ok((n, from)) => push(
                            items,
                            Datagram {
                                from,
                                payload: buf[..n].to_vec(),
                            },
                        ),
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            },
        )?;
        Ok(UdpListener { addr, rec })
    }

    /// The bound address (or group and port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every datagram so far.
    pub fn datagrams(&self) -> Vec<Datagram> {
        self.rec.items()
    }

    /// Number of datagrams so far.
    pub fn count(&self) -> usize {
        self.rec.count_where(|_| true)
    }

    /// Number of datagrams whose payload equals `payload`.
    pub fn count_payload(&self, payload: &[u8]) -> usize {
        self.rec.count_where(|d| d.payload == payload)
    }

    /// Waits until `n` datagrams arrived or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        self.rec.wait_for(n, timeout, |_| true)
    }

    /// Forgets recorded datagrams.
    pub fn clear(&self) {
        self.rec.clear()
    }
}

/// What a sender managed to hand to the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Sends that the kernel accepted.
    pub sent: usize,
    /// Sends that returned an error.
    pub failed: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
}

fn send_loop(
    to: SocketAddr,
    payload: &[u8],
    count: usize,
    interval: Duration,
    opts: &SendOpts,
    stop: Option<&AtomicBool>,
) -> Result<SendReport> {
    let s = opts.socket(&to, Type::DGRAM, Protocol::UDP)?;
    let dst = to.into();
    let mut r = SendReport::default();
    let start = Instant::now();
    for i in 0..count {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            break;
        }
        match s.send_to(payload, &dst) {
            Ok(_) => r.sent += 1,
            Err(e) => {
                r.failed += 1;
                r.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if !interval.is_zero() {
            // Pace against the start time so that the rate holds even if a send is slow.
            let due = start + interval * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(r)
}

/// Sends one datagram from `ns` to `to`.
pub fn udp_send(ns: &Netns, to: SocketAddr, payload: &[u8], opts: &SendOpts) -> Result<SendReport> {
    udp_send_many(ns, to, payload, 1, Duration::ZERO, opts)
}

/// Sends `count` datagrams from `ns` to `to`, one every `interval`.
pub fn udp_send_many(
    ns: &Netns,
    to: SocketAddr,
    payload: &[u8],
    count: usize,
    interval: Duration,
    opts: &SendOpts,
) -> Result<SendReport> {
    let payload = payload.to_vec();
    let opts = opts.clone();
    ns.run(move || send_loop(to, &payload, count, interval, &opts, None))?
}

/// A sender running in the background (one datagram per `interval`, at most `max` of them)
/// until stopped.
#[derive(Debug)]
pub struct UdpStream {
    stop: Arc<AtomicBool>,
    thread: Option<NsThread<Result<SendReport>>>,
}

impl UdpStream {
    /// Starts sending from `ns` to `to`.
    pub fn start(
        ns: &Netns,
        to: SocketAddr,
        payload: &[u8],
        interval: Duration,
        max: usize,
        opts: &SendOpts,
    ) -> Result<UdpStream> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let payload = payload.to_vec();
        let opts = opts.clone();
        let thread = ns.spawn(move || send_loop(to, &payload, max, interval, &opts, Some(&s2)))?;
        Ok(UdpStream {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and returns what was sent.
    pub fn stop(mut self) -> Result<SendReport> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t.join()?,
            None => Err(Error::new("stream already stopped")),
        }
    }
}

impl Drop for UdpStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
