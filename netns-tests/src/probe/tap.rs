//! A wire tap: an AF_PACKET socket on one interface that records every IPv4/IPv6 packet
//! crossing it, parsed down to addresses, protocol, ports and ICMP type. Put it on the far
//! end of a link (e.g. the router's `lan0`) to see exactly what left the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{is_timeout, push, Recorder, POLL};
use crate::error::{Context, Result};
use crate::netns::Netns;
use crate::sys;

/// IP protocol numbers used in [`Packet::proto`].
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// One IP packet seen by a [`Tap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// True if it was received by the tapped interface (came from the other end of the
    /// link), false if it was sent by it.
    pub inbound: bool,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source port (TCP/UDP).
    pub sport: Option<u16>,
    /// Destination port (TCP/UDP).
    pub dport: Option<u16>,
    /// ICMP / ICMPv6 type.
    pub icmp_type: Option<u8>,
    /// Length of the IP packet.
    pub len: usize,
}

impl Packet {
    /// A one-line description (`in udp 192.168.1.2:40000 > 203.0.113.10:9`).
    pub fn describe(&self) -> String {
        let dir = if self.inbound { "in" } else { "out" };
        let p = match self.proto {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => format!("icmp{}", self.icmp_type.unwrap_or(255)),
            proto::ICMPV6 => format!("icmp6-{}", self.icmp_type.unwrap_or(255)),
            n => format!("proto{n}"),
        };
        match (self.sport, self.dport) {
            (Some(s), Some(d)) => format!("{dir} {p} {}:{s} > {}:{d}", self.src, self.dst),
            _ => format!("{dir} {p} {} > {}", self.src, self.dst),
        }
    }
}

/// Parses an IPv4 or IPv6 packet.
pub fn parse(inbound: bool, pkt: &[u8]) -> Option<Packet> {
    let version = pkt.first()? >> 4;
    let (src, dst, proto, l4) = match version {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if pkt.len() < 20 || ihl < 20 {
                return None;
            }
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            (IpAddr::V4(src), IpAddr::V4(dst), pkt[9], pkt.get(ihl..)?)
        }
        6 => {
            let src: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            let mut next = pkt[6];
            let mut off = 40;
            // Skip hop-by-hop, routing and destination options headers.
            while matches!(next, 0 | 43 | 60) {
                let h = pkt.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                next,
                pkt.get(off..)?,
            )
        }
        _ => return None,
    };
    let ports = |b: &[u8]| {
        (b.len() >= 4).then(|| {
            (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            )
        })
    };
    let (sport, dport, icmp_type) = match proto {
        proto::TCP | proto::UDP => match ports(l4) {
            Some((s, d)) => (Some(s), Some(d), None),
            None => (None, None, None),
        },
        proto::ICMP | proto::ICMPV6 => (None, None, l4.first().copied()),
        _ => (None, None, None),
    };
    Some(Packet {
        inbound,
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        len: pkt.len(),
    })
}

/// Records every IP packet crossing one interface of a namespace.
#[derive(Debug)]
pub struct Tap {
    ifname: String,
    rec: Recorder<Packet>,
}

impl Tap {
    /// Starts tapping `ifname` inside `ns`.
    pub fn start(ns: &Netns, ifname: &str) -> Result<Tap> {
        let name = ifname.to_string();
        let rec = Recorder::start(
            ns,
            move || -> Result<OwnedFd> {
                let idx = sys::if_index(&name).context(|| format!("ifindex of {name}"))?;
                sys::packet_socket(idx, POLL.as_millis() as u32)
                    .context(|| format!("packet socket on {name}"))
            },
            |fd: OwnedFd, stop: &AtomicBool, items: &Mutex<Vec<Packet>>| {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    match sys::recv_frame(&fd, &mut buf) {
                        Ok(f) => {
                            if f.protocol != 0x0800 && f.protocol != 0x86dd {
                                continue;
                            }
                            let inbound = f.pkttype != libc::PACKET_OUTGOING;
                            if let Some(p) = parse(inbound, &buf[..f.len.min(buf.len())]) {
                                push(items, p);
                            }
                        }
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            },
        )?;
        Ok(Tap {
            ifname: ifname.to_string(),
            rec,
        })
    }

    /// The tapped interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Every packet so far.
    pub fn packets(&self) -> Vec<Packet> {
        self.rec.items()
    }

    /// Packets so far that match `pred`.
    pub fn matching(&self, pred: impl Fn(&Packet) -> bool) -> Vec<Packet> {
        self.rec.items().into_iter().filter(|p| pred(p)).collect()
    }

    /// Number of packets so far that match `pred`.
    pub fn count(&self, pred: impl Fn(&Packet) -> bool) -> usize {
        self.rec.count_where(pred)
    }

    /// Number of inbound packets (sent by the far end) so far that match `pred`.
    pub fn count_inbound(&self, pred: impl Fn(&Packet) -> bool) -> usize {
        self.rec.count_where(|p| p.inbound && pred(p))
    }

    /// Waits until `n` packets match or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: usize, timeout: Duration, pred: impl Fn(&Packet) -> bool) -> usize {
        self.rec.wait_for(n, timeout, pred)
    }

    /// Forgets recorded packets.
    pub fn clear(&self) {
        self.rec.clear()
    }
}
