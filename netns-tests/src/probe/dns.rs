//! DNS: a tiny responder that answers every query with its own listening address (an A
//! record for IPv4, AAAA for IPv6), over UDP and TCP, recording each query; and a query
//! probe that reports which responder answered. So a test knows where a query *ended*,
//! whatever address it was sent to.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Protocol, Type};

use super::tcp::{classify, ConnectOutcome};
use super::{is_timeout, push, Recorder, SendOpts, POLL};
use crate::error::{Context, Result};
use crate::netns::Netns;

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// DNS transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// DNS over UDP.
    Udp,
    /// DNS over TCP (length-prefixed).
    Tcp,
}

/// A query received by a [`DnsResponder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Transport it came over.
    pub transport: Transport,
    /// The client as seen by the responder.
    pub from: SocketAddr,
}

/// What a query probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsOutcome {
    /// Answered; `by` is the address the responder was listening on.
    Answered {
        /// The responder's listening address, from the answer record.
        by: IpAddr,
    },
    /// The TCP connect failed.
    ConnectFailed(ConnectOutcome),
    /// Sending failed.
    SendFailed(String),
    /// No answer in time (or the receive failed, e.g. `ECONNREFUSED` after an ICMP error).
    NoAnswer(String),
}

impl DnsOutcome {
    /// The answering responder's address, if answered.
    pub fn answered_by(&self) -> Option<IpAddr> {
        match self {
            DnsOutcome::Answered { by } => Some(*by),
            _ => None,
        }
    }
}

/// Builds a query for `probe.leak.test. IN A` with identifier `id`.
pub fn build_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["probe", "leak", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Builds the answer to `query` saying `me`; `None` if `query` is not a plausible query.
pub fn build_answer(query: &[u8], me: IpAddr) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut end = 12;
    loop {
        let l = usize::from(*query.get(end)?);
        end += 1;
        if l == 0 {
            break;
        }
        end += l;
    }
    end += 4;
    let question = query.get(12..end)?;
    let mut a = Vec::with_capacity(end + 28);
    a.extend_from_slice(&query[0..2]);
    a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(question);
    let (ty, rdata): (u16, Vec<u8>) = match me {
        IpAddr::V4(v4) => (1, v4.octets().to_vec()),
        IpAddr::V6(v6) => (28, v6.octets().to_vec()),
    };
    a.extend_from_slice(&[0xc0, 0x0c]);
    a.extend_from_slice(&ty.to_be_bytes());
    a.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    a.extend_from_slice(&rdata);
    Some(a)
}

fn skip_name(msg: &[u8], mut off: usize) -> Option<usize> {
    loop {
        let l = *msg.get(off)?;
        if l & 0xc0 == 0xc0 {
            return Some(off + 2);
        }
        off += 1;
        if l == 0 {
            return Some(off);
        }
        off += usize::from(l);
    }
}

/// Extracts the address from an answer built by [`build_answer`] for query `id`.
pub fn parse_answer(id: u16, msg: &[u8]) -> Option<IpAddr> {
    if msg.len() < 12 || msg[0..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    if u16::from_be_bytes([msg[6], msg[7]]) == 0 {
        return None;
    }
    let mut off = skip_name(msg, 12)? + 4;
    off = skip_name(msg, off)?;
    let rr = msg.get(off..off + 10)?;
    let rdlen = usize::from(u16::from_be_bytes([rr[8], rr[9]]));
    let data = msg.get(off + 10..off + 10 + rdlen)?;
    match data.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            data[0], data[1], data[2], data[3],
        ))),
        16 => {
            let o: [u8; 16] = data.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// A DNS responder listening on `addr:53` (UDP and TCP) in a namespace.
#[derive(Debug)]
pub struct DnsResponder {
    addr: IpAddr,
    udp: Recorder<Query>,
    tcp: Recorder<Query>,
}

impl DnsResponder {
    /// Starts answering on `addr` port 53 inside `ns`.
    pub fn start(ns: &Netns, addr: IpAddr) -> Result<DnsResponder> {
        Self::start_on_port(ns, addr, 53)
    }

    /// Starts answering on `addr:port` inside `ns`.
    pub fn start_on_port(ns: &Netns, addr: IpAddr, port: u16) -> Result<DnsResponder> {
        let sa = SocketAddr::new(addr, port);
        let udp = Recorder::start(
            ns,
            move || -> Result<UdpSocket> {
                let s = UdpSocket::bind(sa).context(|| format!("udp bind {sa}"))?;
                s.set_read_timeout(Some(POLL))
                    .context(|| "SO_RCVTIMEO".to_string())?;
                Ok(s)
            },
            move |s: UdpSocket, stop: &AtomicBool, items: &Mutex<Vec<Query>>| {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    match s.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            push(
                                items,
                                Query {
                                    transport: Transport::Udp,
                                    from,
                                },
                            );
                            if let Some(a) = build_answer(&buf[..n], addr) {
                                let _ = s.send_to(&a, from);
                            }
                        }
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            },
        )?;
        let tcp = Recorder::start(
            ns,
            move || -> Result<TcpListener> {
                let l = TcpListener::bind(sa).context(|| format!("tcp bind {sa}"))?;
                l.set_nonblocking(true)
                    .context(|| "O_NONBLOCK".to_string())?;
                Ok(l)
            },
            move |l: TcpListener, stop: &AtomicBool, items: &Mutex<Vec<Query>>| {
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((mut s, from)) => {
                            push(
                                items,
                                Query {
                                    transport: Transport::Tcp,
                                    from,
                                },
                            );
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                            let mut len = [0u8; 2];
                            if s.read_exact(&mut len).is_err() {
                                continue;
                            }
                            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if s.read_exact(&mut q).is_err() {
                                continue;
                            }
                            if let Some(a) = build_answer(&q, addr) {
                                let mut out = (a.len() as u16).to_be_bytes().to_vec();
                                out.extend_from_slice(&a);
                                let _ = s.write_all(&out);
                            }
                        }
                        Err(e) if is_timeout(&e) => std::thread::sleep(POLL / 4),
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            },
        )?;
        Ok(DnsResponder { addr, udp, tcp })
    }

    /// The address it listens on (and answers with).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Every query received so far.
    pub fn queries(&self) -> Vec<Query> {
        let mut v = self.udp.items();
        v.extend(self.tcp.items());
        v
    }

    /// Number of queries received so far.
    pub fn count(&self) -> usize {
        self.udp.count_where(|_| true) + self.tcp.count_where(|_| true)
    }
}

/// Sends one query from `ns` to `server` over `transport` and reports who answered.
pub fn dns_query(
    ns: &Netns,
    server: SocketAddr,
    transport: Transport,
    opts: &SendOpts,
) -> Result<DnsOutcome> {
    let opts = opts.clone();
    ns.run(move || query_here(server, transport, &opts))?
}

fn query_here(server: SocketAddr, transport: Transport, opts: &SendOpts) -> Result<DnsOutcome> {
    let id =
        (std::process::id() as u16).wrapping_mul(7919) ^ NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let q = build_query(id);
    match transport {
        Transport::Udp => {
            let s = opts.socket(&server, Type::DGRAM, Protocol::UDP)?;
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(opts.timeout()))
                .context(|| "SO_RCVTIMEO".to_string())?;
            if let Err(e) = s.send_to(&q, server) {
                return Ok(DnsOutcome::SendFailed(e.to_string()));
            }
            let mut buf = [0u8; 1024];
            let deadline = Instant::now() + opts.timeout();
            while Instant::now() < deadline {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        if let Some(by) = parse_answer(id, &buf[..n]) {
                            return Ok(DnsOutcome::Answered { by });
                        }
                    }
                    Err(e) => return Ok(DnsOutcome::NoAnswer(e.to_string())),
                }
            }
            Ok(DnsOutcome::NoAnswer("timed out".into()))
        }
        Transport::Tcp => {
            let s = opts.socket(&server, Type::STREAM, Protocol::TCP)?;
            if let Err(e) = s.connect_timeout(&server.into(), opts.timeout()) {
                return Ok(DnsOutcome::ConnectFailed(classify(&e)));
            }
            let mut s: std::net::TcpStream = s.into();
            s.set_read_timeout(Some(opts.timeout()))
                .context(|| "SO_RCVTIMEO".to_string())?;
            let mut out = (q.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&q);
            if let Err(e) = s.write_all(&out) {
                return Ok(DnsOutcome::SendFailed(e.to_string()));
            }
            let mut len = [0u8; 2];
            if let Err(e) = s.read_exact(&mut len) {
                return Ok(DnsOutcome::NoAnswer(e.to_string()));
            }
            let mut a = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if let Err(e) = s.read_exact(&mut a) {
                return Ok(DnsOutcome::NoAnswer(e.to_string()));
            }
            Ok(match parse_answer(id, &a) {
                Some(by) => DnsOutcome::Answered { by },
                None => DnsOutcome::NoAnswer("malformed answer".into()),
            })
        }
    }
}
