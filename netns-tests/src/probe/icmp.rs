//! ICMP and ICMPv6 echo: a sender that waits for the reply, and a counter that records
//! echo requests where they land.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{is_timeout, push, Recorder, SendOpts, POLL};
use crate::error::{Context, Result};
use crate::netns::Netns;
use crate::sys;

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

fn next_id() -> u16 {
    let pid = std::process::id() as u16;
    pid.wrapping_mul(31)
        .wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// What an echo request saw from the sender's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoOutcome {
    /// An echo reply with our identifier came back.
    Reply,
    /// An ICMP error (type, code) about our request came back (e.g. from a reject rule).
    Error(u8, u8),
    /// The send itself failed (e.g. `EPERM` from a local firewall).
    SendFailed(String),
    /// Nothing came back in time.
    TimedOut,
}

/// One echo request recorded by an [`EchoCounter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoSeen {
    /// Source address of the request.
    pub src: IpAddr,
    /// Destination address (IPv4 only; `None` for IPv6).
    pub dst: Option<IpAddr>,
    /// Echo identifier.
    pub id: u16,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, id: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(b"netns-tests echo");
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Strips the IPv4 header from what a raw IPv4 socket returned; IPv6 raw sockets return
/// the ICMPv6 message alone.
/// An ICMP message and, for IPv4, the (source, destination) of its IP header.
type IcmpPart<'a> = (&'a [u8], Option<(Ipv4Addr, Ipv4Addr)>);

fn icmp_part(v6: bool, pkt: &[u8]) -> Option<IcmpPart<'_>> {
    if v6 {
        return Some((pkt, None));
    }
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if pkt.len() < ihl + 8 || ihl < 20 {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    Some((&pkt[ihl..], Some((src, dst))))
}

/// For an ICMP error, the echo identifier of the request quoted inside it.
fn quoted_id(v6: bool, icmp: &[u8]) -> Option<u16> {
    let inner = icmp.get(8..)?;
    let off = if v6 {
        40
    } else {
        usize::from(*inner.first()? & 0x0f) * 4
    };
    let e = inner.get(off..off + 8)?;
    Some(u16::from_be_bytes([e[4], e[5]]))
}

/// Sends one echo request from `ns` to `dst` and waits (up to the timeout in `opts`) for
/// the reply. For a link-local IPv6 `dst`, set `opts.bind_device`: its index becomes the
/// scope.
pub fn icmp_echo(ns: &Netns, dst: IpAddr, opts: &SendOpts) -> Result<EchoOutcome> {
    let opts = opts.clone();
    ns.run(move || echo_here(dst, &opts))?
}

fn echo_here(dst: IpAddr, opts: &SendOpts) -> Result<EchoOutcome> {
    let v6 = dst.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let s = Socket::new(domain, Type::RAW, Some(proto)).context(|| "raw socket".to_string())?;
    let mut scope = 0;
    if let Some(dev) = &opts.bind_device {
        s.bind_device(Some(dev.as_bytes()))
            .context(|| format!("SO_BINDTODEVICE {dev}"))?;
        scope = sys::if_index(dev).context(|| format!("ifindex of {dev}"))?;
    }
    s.set_read_timeout(Some(POLL))
        .context(|| "SO_RCVTIMEO".to_string())?;
    let id = next_id();
    let to: SocketAddr = match dst {
        IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope)),
    };
    if let Err(e) = s.send_to(&echo_request(v6, id), &to.into()) {
        return Ok(EchoOutcome::SendFailed(e.to_string()));
    }
    let deadline = Instant::now() + opts.timeout();
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        let n = match sys::recv_from(&s, &mut buf) {
            Ok((n, _)) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Ok(EchoOutcome::SendFailed(e.to_string())),
        };
        let Some((icmp, _)) = icmp_part(v6, &buf[..n]) else {
            continue;
        };
        if icmp.len() < 8 {
            continue;
        }
        let (ty, code) = (icmp[0], icmp[1]);
        let reply = if v6 { 129 } else { 0 };
        let is_err = if v6 {
            ty < 128
        } else {
            matches!(ty, 3 | 11 | 12)
        };
        if ty == reply && u16::from_be_bytes([icmp[4], icmp[5]]) == id {
            return Ok(EchoOutcome::Reply);
        }
        if is_err && quoted_id(v6, icmp) == Some(id) {
            return Ok(EchoOutcome::Error(ty, code));
        }
    }
    Ok(EchoOutcome::TimedOut)
}

/// Records ICMP and ICMPv6 echo requests arriving in a namespace (raw sockets; the kernel
/// still answers them).
#[derive(Debug)]
pub struct EchoCounter {
    v4: Recorder<EchoSeen>,
    v6: Recorder<EchoSeen>,
}

impl EchoCounter {
    /// Starts counting in `ns`.
    pub fn start(ns: &Netns) -> Result<EchoCounter> {
        Ok(EchoCounter {
            v4: Self::one(ns, false)?,
            v6: Self::one(ns, true)?,
        })
    }

    fn one(ns: &Netns, v6: bool) -> Result<Recorder<EchoSeen>> {
        Recorder::start(
            ns,
            move || -> Result<Socket> {
                let (d, p) = if v6 {
                    (Domain::IPV6, Protocol::ICMPV6)
                } else {
                    (Domain::IPV4, Protocol::ICMPV4)
                };
                let s = Socket::new(d, Type::RAW, Some(p)).context(|| "raw socket".to_string())?;
                s.set_read_timeout(Some(POLL))
                    .context(|| "SO_RCVTIMEO".to_string())?;
                Ok(s)
            },
            move |s: Socket, stop: &AtomicBool, items: &Mutex<Vec<EchoSeen>>| {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    let (n, from) = match sys::recv_from(&s, &mut buf) {
                        Ok(x) => x,
                        Err(e) if is_timeout(&e) => continue,
                        Err(_) => {
                            std::thread::sleep(POLL);
                            continue;
                        }
                    };
                    let Some((icmp, hdr)) = icmp_part(v6, &buf[..n]) else {
                        continue;
                    };
                    let request = if v6 { 128 } else { 8 };
                    if icmp.len() < 8 || icmp[0] != request {
                        continue;
                    }
                    let id = u16::from_be_bytes([icmp[4], icmp[5]]);
                    let (src, dst) = match hdr {
                        Some((s, d)) => (IpAddr::V4(s), Some(IpAddr::V4(d))),
                        None => match from.as_socket() {
                            Some(a) => (a.ip(), None),
                            None => continue,
                        },
                    };
                    push(items, EchoSeen { src, dst, id });
                }
            },
        )
    }

    /// Every echo request recorded so far (IPv4 then IPv6).
    pub fn seen(&self) -> Vec<EchoSeen> {
        let mut v = self.v4.items();
        v.extend(self.v6.items());
        v
    }

    /// Number of echo requests whose source is `src`.
    pub fn count_from(&self, src: IpAddr) -> usize {
        self.v4.count_where(|e| e.src == src) + self.v6.count_where(|e| e.src == src)
    }

    /// Number of echo requests recorded so far.
    pub fn count(&self) -> usize {
        self.v4.count_where(|_| true) + self.v6.count_where(|_| true)
    }

    /// Waits until `n` requests were recorded or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let c = self.count();
            if c >= n || start.elapsed() >= timeout {
                return c;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.v4.clear();
        self.v6.clear();
    }
}
