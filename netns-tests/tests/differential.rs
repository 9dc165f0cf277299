//! The evaluator against the kernel: thousands of packets generated at random, each walked
//! through the running firewall by `bitmask_root::nft::eval` (with the kernel's own route
//! lookups) and sent for real in the leak-matrix topology, where taps on the far end of every
//! link (and on the client's `lo`) see whether it arrived, where, and with which addresses.
//! Every difference between the model and the kernel fails the test with the packet, the rule
//! the model chose and the plan.
//!
//! Packets are generated from a seeded generator (`DIFFERENTIAL_SEED`, else the clock; the
//! seed is printed first and in every failure) over families, destinations from pools that
//! reach every rule (gateways, the LANs, other prefixes, multicast and broadcast, the resolver,
//! local stubs and addresses, the tunnel's side), protocols, ports, bound devices, and
//! forwarded sources (a container behind `ctr0`). They are sent in batches: each packet of a
//! batch carries its own source port (TCP, UDP) or length (UDP, ICMP), by which the taps tell
//! them apart. The run covers the default profile, each `--lan` mode and `--compat`; after
//! each, `firewall isup` must still say up (counters do not make a table "tampered"), and the
//! counters that `firewall status --json` reports must equal what the model says each
//! refusing rule refused. A sample of packets is also asked through `firewall explain --json`.
//!
//! Run with `cargo test -p netns-tests --test differential -- --nocapture` (as root, after
//! `cargo build`); the per-rule counts are printed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use bitmask_root::firewall::route::KernelRoutes;
use bitmask_root::nft::decode::read_running;
use bitmask_root::nft::eval::{evaluate, ChainEnd, Evaluation, Fate, Origin, Packet, Transport};
use bitmask_root::plan::Ruleset;
use common::bin;
use netns_tests::addr::*;
use netns_tests::probe::tap::{Packet as Seen, Tap};
use netns_tests::{Netns, Topology};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Packets per profile.
const PER_PROFILE: usize = 2000;
/// Packets per batch (each with its own length slot).
const BATCH: usize = 200;
/// The payload length of slot 0 (long enough that no frame is padded).
const LEN_BASE: usize = 64;
/// How long to wait for packets the model says arrive.
const WAIT: Duration = Duration::from_secs(3);
/// How long to wait for packets the model says do not arrive.
const SETTLE: Duration = Duration::from_millis(300);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// splitmix64: small, seeded, good enough to pick packets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Udp { sport: u16, dport: u16 },
    Tcp { sport: u16, dport: u16 },
    Icmp { icmp_type: u8, hops: u8 },
}

/// One packet to send and to evaluate.
#[derive(Debug, Clone)]
struct Probe {
    dst: IpAddr,
    kind: Kind,
    /// The socket's bound device (this host's packets).
    via: Option<String>,
    /// Forwarded from the container with this source.
    forwarded: Option<IpAddr>,
    /// Payload length (UDP, ICMP): the probe's identity within its batch.
    payload: usize,
}

impl Probe {
    fn describe(&self) -> String {
        let what = match self.kind {
            Kind::Udp { sport, dport } => format!("udp {sport} -> {}:{dport}", self.dst),
            Kind::Tcp { sport, dport } => format!("tcp {sport} -> {}:{dport}", self.dst),
            Kind::Icmp { icmp_type, hops } => {
                format!("icmp type {icmp_type} hop limit {hops} -> {}", self.dst)
            }
        };
        let from = match (&self.via, self.forwarded) {
            (_, Some(src)) => format!(" forwarded from {src} in by ctr0"),
            (Some(v), None) => format!(" from a socket bound to {v}"),
            (None, None) => " as routed".to_string(),
        };
        format!("{what}{from} (payload {})", self.payload)
    }

    fn packet(&self) -> Packet {
        let (transport, hops) = match self.kind {
            Kind::Udp { sport, dport } => (Transport::Udp { sport, dport }, 64),
            Kind::Tcp { sport, dport } => (Transport::Tcp { sport, dport }, 64),
            Kind::Icmp { icmp_type, hops } => (Transport::Icmp { icmp_type }, hops),
        };
        Packet {
            src: self.forwarded,
            dst: self.dst,
            transport,
            hop_limit: hops,
            reply: false,
            origin: match self.forwarded {
                Some(_) => Origin::Forwarded { iif: "ctr0".into() },
                None => Origin::Local {
                    bound_device: self.via.clone(),
                    uid: Some(0),
                },
            },
        }
    }

    /// The IP length the taps will see (UDP and ICMP).
    fn ip_len(&self) -> usize {
        let header = if self.dst.is_ipv4() { 20 } else { 40 };
        header + 8 + self.payload
    }

    /// Whether a tapped packet is this probe.
    fn is(&self, p: &Seen) -> bool {
        match self.kind {
            Kind::Tcp { sport, .. } => p.proto == 6 && p.sport == Some(sport),
            Kind::Udp { sport, .. } => {
                p.proto == 17 && p.sport == Some(sport) && p.len == self.ip_len()
            }
            Kind::Icmp { icmp_type, .. } => {
                p.proto == if self.dst.is_ipv4() { 1 } else { 58 }
                    && p.icmp_type == Some(icmp_type)
                    && p.len == self.ip_len()
            }
        }
    }
}

/// The world: the leak-matrix topology with a tunnel and a second uplink, a container behind
/// `ctr0`, taps on the far end of every link of the client and on its `lo`.
struct World {
    t: Topology,
    ctr: Netns,
    taps: Vec<(&'static str, Tap)>,
    /// Link-local address of the peer on each client device.
    peer_ll: BTreeMap<&'static str, Ipv6Addr>,
    /// The client's addresses per device.
    addrs: BTreeMap<&'static str, Vec<IpAddr>>,
}

const CTR_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const CTR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);

impl World {
    fn build() -> World {
        let t = Topology::builder()
            .tunnel(true)
            .second_uplink(true)
            .gateways(&[IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)])
            .build()
            .expect("topology");
        let ctr = Netns::create("ctr").expect("container namespace");
        t.client()
            .ip(&[
                "link",
                "add",
                "ctr0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ctr.name(),
            ])
            .expect("veth");
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        t.client()
            .ip_batch(&lines(&[
                "link set ctr0 up",
                "addr add 172.17.0.1/16 dev ctr0",
                "addr add fd00:17::1/64 dev ctr0 nodad",
            ]))
            .expect("client side of the container link");
        ctr.ip_batch(&lines(&[
            "link set eth0 up",
            "addr add 172.17.0.2/16 dev eth0",
            "addr add fd00:17::2/64 dev eth0 nodad",
            "route add default via 172.17.0.1",
            "route add default via fd00:17::1",
        ]))
        .expect("container");
        // The container answers ARP for every address (as a router on a real link would be
        // reached through its gateway): a packet of the client that a bound socket sends by
        // ctr0 to any address leaves, rather than waiting for a neighbour that never answers.
        ctr.sysctl(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.eth0.proxy_arp_pvlan", "1"),
            ("net.ipv4.neigh.eth0.proxy_delay", "0"),
        ])
        .expect("container proxy ARP");
        t.client()
            .sysctl(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
            ])
            .expect("forwarding in the client");
        let vpn = t.vpn().expect("vpn");
        let router2 = t.router2().expect("router2");
        let taps = vec![
            ("eth0", Tap::start(t.router(), "lan0").expect("tap")),
            ("eth1", Tap::start(router2, "lan0").expect("tap")),
            ("tun0", Tap::start(vpn, "tunpeer").expect("tap")),
            ("ctr0", Tap::start(&ctr, "eth0").expect("tap")),
            ("lo", Tap::start(t.client(), "lo").expect("tap")),
        ];
        let mut peer_ll = BTreeMap::new();
        peer_ll.insert(
            "eth0",
            Topology::link_local(t.router(), "lan0").expect("ll"),
        );
        peer_ll.insert("eth1", Topology::link_local(router2, "lan0").expect("ll"));
        peer_ll.insert("tun0", Topology::link_local(vpn, "tunpeer").expect("ll"));
        peer_ll.insert("ctr0", Topology::link_local(&ctr, "eth0").expect("ll"));
        let mut addrs = BTreeMap::new();
        for dev in ["eth0", "eth1", "tun0", "ctr0"] {
            let out = t
                .client()
                .ip(&["-o", "addr", "show", "dev", dev])
                .expect("addresses");
            let list: Vec<IpAddr> = out
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "inet" || w[0] == "inet6")
                .filter_map(|w| w[1].split('/').next()?.parse().ok())
                .collect();
            addrs.insert(dev, list);
        }
        World {
            t,
            ctr,
            taps,
            peer_ll,
            addrs,
        }
    }

    /// Fills the neighbour caches (no firewall yet), so that no probe waits for ARP or ND.
    fn warm_up(&self) {
        use netns_tests::probe::icmp::icmp_echo;
        use netns_tests::SendOpts;
        let c = self.t.client();
        for (dst, dev) in [
            (IpAddr::V4(ROUTER_LAN_V4), None),
            (IpAddr::V6(ROUTER_LAN_V6), None),
            (IpAddr::V4(ROUTER2_LAN_V4), None),
            (IpAddr::V6(ROUTER2_LAN_V6), None),
            (IpAddr::V4(VPN_RESOLVER), None),
            (IpAddr::V4(CTR_V4), None),
            (IpAddr::V6(CTR_V6), None),
            (IpAddr::V4(INTERNET_HOST_V4), Some("eth0")),
            (IpAddr::V4(INTERNET_HOST_V4), Some("eth1")),
        ]
        .into_iter()
        .chain(
            self.peer_ll
                .iter()
                .map(|(dev, a)| (IpAddr::V6(*a), Some(*dev))),
        ) {
            let opts = SendOpts {
                bind_device: dev.map(str::to_string),
                ..SendOpts::default()
            };
            let _ = icmp_echo(c, dst, &opts);
        }
        let _ = icmp_echo(
            &self.ctr,
            IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)),
            &Default::default(),
        );
        let _ = icmp_echo(&self.ctr, ip("fd00:17::1"), &Default::default());
    }

    fn clear(&self) {
        for (_, tap) in &self.taps {
            tap.clear();
        }
    }
}

/// Generates one probe (identity fields filled in later).
fn generate(rng: &mut Rng, w: &World) -> Probe {
    let dports: [u16; 12] = [53, 53, 53, 9, 80, 443, 631, 67, 547, 1900, 5353, 22];
    let mut probe = Probe {
        dst: IpAddr::V4(INTERNET_HOST_V4),
        kind: Kind::Udp { sport: 0, dport: 9 },
        via: None,
        forwarded: None,
        payload: 0,
    };
    let l4 = |rng: &mut Rng, dport: u16| match rng.below(10) {
        0..=4 => Kind::Udp { sport: 0, dport },
        5..=7 => Kind::Tcp { sport: 0, dport },
        _ => Kind::Icmp {
            icmp_type: 0,
            hops: 64,
        },
    };
    // Packets that only some rules take, often enough that each such rule sees a dozen
    // or more in every run (the test fails when a rule sees none).
    match rng.below(100) {
        0..=3 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0"]);
            probe.via = Some(dev.into());
            probe.dst = if rng.chance(60) {
                ip("255.255.255.255")
            } else {
                IpAddr::V4(ROUTER_LAN_V4)
            };
            probe.kind = Kind::Udp {
                sport: 68,
                dport: 67,
            };
            return probe;
        }
        4..=7 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0"]);
            probe.via = Some(dev.into());
            probe.dst = ip("ff02::1:2");
            probe.kind = Kind::Udp {
                sport: 546,
                dport: 547,
            };
            return probe;
        }
        8..=13 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0", "tun0"]);
            probe.via = Some(dev.into());
            let ll = IpAddr::V6(w.peer_ll[dev]);
            probe.dst = *rng.pick(&[ip("ff02::2"), ip("ff02::1"), ll, ll]);
            probe.kind = Kind::Icmp {
                icmp_type: *rng.pick(&[133, 135, 136, 128]),
                hops: if rng.chance(75) { 255 } else { 64 },
            };
            return probe;
        }
        14..=23 => {
            // Discovery multicast, bound (most often to the default device) or routed.
            let (dst, port) = *rng.pick(&[
                ("239.255.255.250", 1900u16),
                ("224.0.0.251", 5353),
                ("ff05::c", 1900),
                ("ff02::fb", 5353),
                ("239.1.2.3", 5353),
                ("ff02::fb", 9),
            ]);
            probe.dst = ip(dst);
            let scoped = dst.starts_with("ff02");
            if scoped || rng.chance(80) {
                probe.via = Some((*rng.pick(&["eth0", "eth0", "eth1", "ctr0", "tun0"])).into());
            }
            probe.kind = if rng.chance(85) {
                Kind::Udp {
                    sport: 0,
                    dport: port,
                }
            } else {
                Kind::Icmp {
                    icmp_type: 0,
                    hops: 64,
                }
            };
            return probe;
        }
        24..=28 => {
            // Local stubs and loopback.
            probe.dst = ip(rng.pick::<&str>(&["127.0.0.53", "127.0.1.1", "127.0.0.1", "::1"]));
            let port = if rng.chance(80) { 53 } else { 9 };
            probe.kind = if rng.chance(70) {
                Kind::Udp {
                    sport: 0,
                    dport: port,
                }
            } else {
                Kind::Tcp {
                    sport: 0,
                    dport: port,
                }
            };
            return probe;
        }
        _ => {}
    }
    let dport = *rng.pick(&dports);
    probe.kind = l4(rng, dport);
    if rng.chance(15) {
        // Forwarded from the container.
        let v4 = [
            "203.0.113.10",
            "198.51.100.53",
            "198.51.100.1",
            "10.41.0.1",
            "10.42.0.1",
            "192.168.1.1",
            "192.168.2.1",
            "192.0.2.1",
        ];
        let v6 = ["2001:db8:1::10", "2001:db8:2::1", "fd00:1::1", "fd00:2::1"];
        probe.dst = if rng.chance(70) {
            ip(rng.pick::<&str>(&v4))
        } else {
            ip(rng.pick::<&str>(&v6))
        };
        probe.forwarded = Some(if probe.dst.is_ipv4() {
            IpAddr::V4(CTR_V4)
        } else {
            IpAddr::V6(CTR_V6)
        });
        return probe;
    }
    let via = *rng.pick(&[
        None,
        None,
        None,
        Some("eth0"),
        Some("eth1"),
        Some("tun0"),
        Some("ctr0"),
    ]);
    probe.via = via.map(str::to_string);
    let anywhere_v4 = [
        "198.51.100.1",
        "203.0.113.10",
        "198.51.100.53",
        "10.9.9.9",
        "192.0.2.1",
        "192.168.1.1",
        "192.168.2.1",
        "172.17.0.2",
        "10.42.0.1",
        "10.41.0.1",
        "192.168.1.2",
        "10.42.0.2",
        "172.17.0.1",
        "192.168.2.2",
    ];
    let anywhere_v6 = [
        "2001:db8:1::10",
        "2001:db8:2::1",
        "fd00:1::1",
        "fd00:2::1",
        "fd00:17::2",
        "fd00:1::2",
        "fd00:17::1",
    ];
    probe.dst = match via {
        None => {
            let loopback = ["127.0.0.1", "127.0.0.53", "127.0.1.1", "::1"];
            match rng.below(10) {
                0 => ip(rng.pick::<&str>(&loopback)),
                1..=6 => ip(rng.pick::<&str>(&anywhere_v4)),
                _ => ip(rng.pick::<&str>(&anywhere_v6)),
            }
        }
        Some("ctr0") => {
            let ll = w.peer_ll["ctr0"].to_string();
            ip(rng.pick::<&str>(&[
                "172.17.0.2",
                "172.17.0.1",
                "fd00:17::2",
                "fd00:17::1",
                ll.as_str(),
            ]))
        }
        Some(dev) => match rng.below(10) {
            0..=1 => IpAddr::V6(w.peer_ll[dev]),
            2..=6 => ip(rng.pick::<&str>(&anywhere_v4)),
            _ => ip(rng.pick::<&str>(&anywhere_v6)),
        },
    };
    probe
}

/// Sends the probes of this host (in the client) or forwarded ones (in the container), a
/// little apart so that the taps keep up.
fn send_all(probes: &[Probe]) {
    for p in probes {
        let _ = send_one(p);
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn if_index(dev: &str) -> u32 {
    let name = std::ffi::CString::new(dev).expect("name");
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

fn send_one(p: &Probe) -> std::io::Result<()> {
    let v6 = p.dst.is_ipv6();
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let (ty, proto) = match p.kind {
        Kind::Udp { .. } => (Type::DGRAM, Protocol::UDP),
        Kind::Tcp { .. } => (Type::STREAM, Protocol::TCP),
        Kind::Icmp { .. } if v6 => (Type::RAW, Protocol::ICMPV6),
        Kind::Icmp { .. } => (Type::RAW, Protocol::ICMPV4),
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    let mut scope = 0;
    if let Some(dev) = &p.via {
        s.bind_device(Some(dev.as_bytes()))?;
        scope = if_index(dev);
    }
    let to = |port: u16| -> SockAddr {
        match p.dst {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), port).into(),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope)).into(),
        }
    };
    let any = |port: u16| -> SockAddr {
        if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into()
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into()
        }
    };
    let payload = vec![0x42u8; p.payload];
    match p.kind {
        Kind::Udp { sport, dport } => {
            s.set_reuse_address(true)?;
            if !v6 {
                s.set_broadcast(true)?;
            }
            s.bind(&any(sport))?;
            let _ = s.send_to(&payload, &to(dport));
            Ok(())
        }
        Kind::Tcp { sport, dport } => {
            s.set_reuse_address(true)?;
            s.bind(&any(sport))?;
            s.set_nonblocking(true)?;
            // connect() sends the SYN (or has it refused) before it returns; closing the
            // socket then sends nothing and rules out retransmissions.
            let _ = s.connect(&to(dport));
            Ok(())
        }
        Kind::Icmp { icmp_type, hops } => {
            let mut msg = vec![icmp_type, 0, 0, 0, 0x12, 0x34, 0, 1];
            msg.extend_from_slice(&payload);
            if v6 {
                s.set_unicast_hops_v6(u32::from(hops))?;
                s.set_multicast_hops_v6(u32::from(hops))?;
            } else {
                let c = checksum(&msg);
                msg[2..4].copy_from_slice(&c.to_be_bytes());
                s.set_ttl_v4(u32::from(hops))?;
            }
            let _ = s.send_to(&msg, &to(0));
            Ok(())
        }
    }
}

/// What the taps saw of one probe: (device, packet) for each sighting.
fn sightings(w: &World, p: &Probe) -> Vec<(&'static str, Seen)> {
    let mut out = Vec::new();
    for (dev, tap) in &w.taps {
        for seen in tap.matching(|s| s.inbound && p.is(s)) {
            out.push((*dev, seen));
        }
    }
    out
}

/// Where the model says the probe shows up: (device, destination, destination port,
/// source rule).
struct Expect {
    dev: Option<&'static str>,
    dst: IpAddr,
    dport: Option<u16>,
    masquerade: Option<String>,
    src: Option<IpAddr>,
}

fn expectation(p: &Probe, ev: &Evaluation) -> Expect {
    let dev = match &ev.fate {
        Fate::Sent { oif } => Some(match oif.as_str() {
            "eth0" => "eth0",
            "eth1" => "eth1",
            "tun0" => "tun0",
            "ctr0" => "ctr0",
            "lo" => "lo",
            other => panic!(
                "the model sends {} by {other}, which has no tap",
                p.describe()
            ),
        }),
        Fate::Delivered => Some("lo"),
        Fate::Rejected { .. } | Fate::Dropped | Fate::NoRoute { .. } => None,
    };
    let (dst, dport) = match &ev.rewrite {
        Some(r) => (r.dst, r.dport),
        None => (
            p.dst,
            match p.kind {
                Kind::Udp { dport, .. } | Kind::Tcp { dport, .. } => Some(dport),
                Kind::Icmp { .. } => None,
            },
        ),
    };
    Expect {
        dev,
        dst,
        dport,
        masquerade: ev.masquerade.as_ref().map(|m| m.oif.clone()),
        src: p.forwarded.or(ev.src),
    }
}

/// Compares one probe's sightings with the model; `Err` says how they differ.
fn compare(
    w: &World,
    p: &Probe,
    ev: &Evaluation,
    seen: &[(&'static str, Seen)],
) -> Result<(), String> {
    let e = expectation(p, ev);
    let devs: BTreeSet<&str> = seen.iter().map(|(d, _)| *d).collect();
    match e.dev {
        None if devs.is_empty() => Ok(()),
        None => Err(format!(
            "the model says it does not arrive, the kernel sent it by {devs:?}"
        )),
        Some(dev) => {
            if devs.len() != 1 || !devs.contains(dev) {
                return Err(format!(
                    "the model says it arrives by {dev}, the kernel's taps saw it by {devs:?}"
                ));
            }
            let (_, pkt) = &seen[0];
            if pkt.dst != e.dst || (e.dport.is_some() && pkt.dport != e.dport) {
                return Err(format!(
                    "the model says it arrives for {}:{:?}, it arrived for {}:{:?}",
                    e.dst, e.dport, pkt.dst, pkt.dport
                ));
            }
            match (&e.masquerade, e.src) {
                (Some(oif), _) => {
                    let mine = w.addrs.get(oif.as_str()).cloned().unwrap_or_default();
                    if !mine.contains(&pkt.src) {
                        return Err(format!(
                            "the model masquerades it to an address of {oif} ({mine:?}), it arrived from {}",
                            pkt.src
                        ));
                    }
                }
                (None, Some(src)) if dev != "lo" && pkt.src != src => {
                    return Err(format!(
                        "the model says it leaves from {src}, it arrived from {}",
                        pkt.src
                    ));
                }
                _ => {}
            }
            Ok(())
        }
    }
}

/// Per rule (chain, index, text): probes it decided, rewrote, or ended a chain for.
#[derive(Default)]
struct Coverage {
    hits: BTreeMap<(String, usize), (String, usize)>,
    refused: BTreeMap<(String, usize), u64>,
}

impl Coverage {
    fn add(&mut self, rs: &Ruleset, ev: &Evaluation) {
        let mut reached = BTreeSet::new();
        for s in &ev.steps {
            if let ChainEnd::Rule(i) = s.end {
                reached.insert((s.chain.clone(), i));
            }
        }
        for r in &ev.logged {
            reached.insert((r.chain.clone(), r.index));
        }
        for key in reached {
            let text = rs
                .chain(&key.0)
                .and_then(|c| c.rules.get(key.1))
                .map(bitmask_root::render::rule_text)
                .unwrap_or_default();
            self.hits.entry(key).or_insert((text, 0)).1 += 1;
        }
        if let (Some(r), false) = (&ev.decided_by, ev.fate.passes()) {
            if matches!(ev.fate, Fate::Rejected { .. } | Fate::Dropped) {
                *self.refused.entry((r.chain.clone(), r.index)).or_default() += 1;
            }
        }
    }
}

/// Runs one profile: start the firewall, generate, evaluate, send, observe, compare.
fn run_profile(
    w: &World,
    flags: &[&str],
    rng: &mut Rng,
    seed: u64,
    next_id: &mut usize,
) -> Vec<String> {
    let b = bin();
    let gws = [IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)];
    b.start(w.t.client(), flags, &gws).expect("firewall start");
    let plan_text = bitmask_root_listing(w, &b);

    // The running table, read back and decoded, is the plan for this network.
    let (running, planned) =
        w.t.client()
            .run(|| {
                let (_, net) = KernelRoutes::open().expect("network");
                let running = read_running("bitmask")
                    .expect("read back")
                    .expect("running");
                let mut builder = bitmask_root::policy::Policy::builder().gateways(gws);
                for pair in flags.chunks(1) {
                    builder = match pair {
                        ["--compat"] => builder.profile(bitmask_root::policy::Profile::Compat),
                        ["--debug"] => builder.debug(true),
                        _ => builder,
                    };
                }
                if let Some(i) = flags.iter().position(|f| *f == "--lan") {
                    builder = builder.lan(flags[i + 1].parse().expect("lan mode"));
                }
                let planned = bitmask_root::firewall::plan(&builder.build().expect("policy"), &net)
                    .expect("plan");
                (running, planned)
            })
            .expect("client thread");
    let rs = running.ruleset.clone();
    assert_eq!(
        rs.chains, planned.chains,
        "flags {flags:?}: the running rules are not the plan"
    );
    assert_eq!(
        rs.sets, planned.sets,
        "flags {flags:?}: the running sets are not the plan"
    );

    let mut failures = Vec::new();
    let mut coverage = Coverage::default();
    let mut explained = 0;
    let mut sent = 0;
    while sent < PER_PROFILE {
        let n = BATCH.min(PER_PROFILE - sent);
        let mut probes: Vec<Probe> = (0..n).map(|_| generate(rng, w)).collect();
        for (slot, p) in probes.iter_mut().enumerate() {
            *next_id += 1;
            let sport = 20000 + (*next_id % 40000) as u16;
            p.payload = LEN_BASE + slot;
            p.kind = match p.kind {
                Kind::Udp { sport: 0, dport } => Kind::Udp { sport, dport },
                Kind::Tcp { dport, .. } => Kind::Tcp { sport, dport },
                Kind::Icmp { icmp_type: 0, hops } => Kind::Icmp {
                    icmp_type: if p.dst.is_ipv4() { 8 } else { 128 },
                    hops,
                },
                other => other,
            };
        }
        // The model, with the kernel's routes, in the client.
        let evs: Vec<Evaluation> =
            w.t.client()
                .run(|| {
                    let (routes, _) = KernelRoutes::open().expect("routes");
                    probes
                        .iter()
                        .map(|p| evaluate(&rs, &p.packet(), &routes).expect("evaluates"))
                        .collect()
                })
                .expect("client thread");
        // The kernel.
        w.clear();
        let (local, fwd): (Vec<Probe>, Vec<Probe>) =
            probes.iter().cloned().partition(|p| p.forwarded.is_none());
        w.t.client().run(|| send_all(&local)).expect("client sends");
        w.ctr.run(|| send_all(&fwd)).expect("container sends");
        let expected: Vec<Expect> = probes
            .iter()
            .zip(&evs)
            .map(|(p, e)| expectation(p, e))
            .collect();
        let deadline = Instant::now() + WAIT;
        loop {
            let missing = probes
                .iter()
                .zip(&expected)
                .filter(|(p, e)| e.dev.is_some() && sightings(w, p).is_empty())
                .count();
            if missing == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(SETTLE);
        for (i, (p, ev)) in probes.iter().zip(&evs).enumerate() {
            coverage.add(&rs, ev);
            let seen = sightings(w, p);
            if let Err(why) = compare(w, p, ev, &seen) {
                failures.push(format!(
                    "seed {seed}, flags {flags:?}, packet {}: {why}\n  model: {:?}, rule {}, rewrite {:?}, masquerade {:?}, route {:?}, rerouted {:?}\n  chains: {:?}\n  seen: {:?}",
                    p.describe(),
                    ev.fate,
                    ev.decided_by.as_ref().map_or("(none: policy accept)".to_string(), |r| format!("`{}` (chain {})", r.text, r.chain)),
                    ev.rewrite.as_ref().map(|r| (r.dst, r.dport)),
                    ev.masquerade.as_ref().map(|m| &m.oif),
                    ev.route,
                    ev.rerouted,
                    ev.steps,
                    seen.iter().map(|(d, s)| format!("{d}: {}", s.describe())).collect::<Vec<_>>(),
                ));
            }
            // Every 40th packet is also asked through the command line.
            if (sent + i) % 40 == 0 {
                explained += 1;
                if let Err(why) = cross_check_cli(w, &b, p, ev) {
                    failures.push(format!("seed {seed}, flags {flags:?}, packet {}: firewall explain disagrees with the library: {why}", p.describe()));
                }
            }
        }
        sent += n;
    }

    // Counters: what each refusing rule counted is what the model says it refused, and isup
    // still says up.
    let isup = b.isup(w.t.client(), &[]).expect("isup");
    if isup != Some(0) {
        failures.push(format!(
            "flags {flags:?}: firewall isup exited {isup:?} after the traffic"
        ));
    }
    let out = b
        .run(w.t.client(), &["firewall", "status", "--json"])
        .expect("status");
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status JSON");
    for rule in status["refused"]["rules"]
        .as_array()
        .expect("counted rules")
    {
        let key = (
            rule["chain"].as_str().unwrap_or_default().to_string(),
            rule["index"].as_u64().unwrap_or_default() as usize,
        );
        let counted = rule["packets"].as_u64().unwrap_or_default();
        let model = coverage.refused.get(&key).copied().unwrap_or(0);
        if counted != model {
            failures.push(format!(
                "seed {seed}, flags {flags:?}: rule `{}` counted {counted} packets, the model refused {model} with it",
                rule["rule"]
            ));
        }
    }

    eprintln!(
        "\n== flags {flags:?}: {sent} packets, {} mismatches, {explained} also asked through firewall explain",
        failures.len()
    );
    let mut never = Vec::new();
    for chain in &rs.chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            let text = bitmask_root::render::rule_text(rule);
            let n = coverage
                .hits
                .get(&(chain.name.clone(), i))
                .map_or(0, |(_, n)| *n);
            let refused = coverage
                .refused
                .get(&(chain.name.clone(), i))
                .copied()
                .unwrap_or(0);
            eprintln!(
                "  {n:>5} reached{} | {} #{i}: {text}",
                if refused > 0 {
                    format!(", {refused:>4} refused")
                } else {
                    String::from("              ")
                },
                chain.name
            );
            if n == 0 {
                never.push(format!("{} #{i}: {text}", chain.name));
            }
        }
    }
    if !never.is_empty() {
        failures.push(format!(
            "seed {seed}, flags {flags:?}: no packet reached {} rule(s): {never:?}",
            never.len()
        ));
    }
    if !failures.is_empty() {
        failures.push(format!("the plan for flags {flags:?}:\n{plan_text}"));
    }
    failures
}

/// `nft list table inet bitmask` in the client (with the counters).
fn bitmask_root_listing(w: &World, _b: &netns_tests::BitmaskRoot) -> String {
    netns_tests::nft::table(w.t.client(), "inet", "bitmask")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Asks `firewall explain --json` about the probe and compares with the library's answer.
fn cross_check_cli(
    w: &World,
    b: &netns_tests::BitmaskRoot,
    p: &Probe,
    ev: &Evaluation,
) -> Result<(), String> {
    let mut args: Vec<String> = vec!["firewall".into(), "explain".into()];
    let host = match p.dst {
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    match p.kind {
        Kind::Udp { sport, dport } | Kind::Tcp { sport, dport } => {
            args.push(format!("{host}:{dport}"));
            args.push(
                if matches!(p.kind, Kind::Udp { .. }) {
                    "udp"
                } else {
                    "tcp"
                }
                .into(),
            );
            args.extend(["--sport".into(), sport.to_string()]);
        }
        Kind::Icmp { icmp_type, hops } => {
            if !matches!(icmp_type, 8 | 128) || hops != 64 {
                return Ok(()); // the command line asks about echo requests only
            }
            args.push(p.dst.to_string());
            args.push("icmp".into());
        }
    }
    if let Some(dev) = &p.via {
        args.extend(["--via".into(), dev.clone()]);
    }
    if let Some(src) = p.forwarded {
        args.extend([
            "--in".into(),
            "ctr0".into(),
            "--src".into(),
            src.to_string(),
        ]);
    }
    if p.forwarded.is_none() {
        args.extend(["--uid".into(), "0".into()]);
    }
    args.push("--json".into());
    let out = b.run(w.t.client(), &args).map_err(|e| e.to_string())?;
    let j: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stderr))?;
    let want_code = if ev.fate.passes() { 0 } else { 1 };
    if out.code != Some(want_code) {
        return Err(format!(
            "exit {:?}, want {want_code}: {}",
            out.code, out.stdout
        ));
    }
    let rule = ev.decided_by.as_ref().map(|r| r.text.clone());
    if j["rule"]["text"].as_str().map(str::to_string) != rule {
        return Err(format!("rule {} vs {rule:?}", j["rule"]["text"]));
    }
    let rewrite = ev.rewrite.as_ref().map(|r| r.dst.to_string());
    if j["rewrite"]["dst"].as_str().map(str::to_string) != rewrite {
        return Err(format!("rewrite {} vs {rewrite:?}", j["rewrite"]));
    }
    if let Fate::Sent { oif } = &ev.fate {
        if j["oif"].as_str() != Some(oif.as_str()) {
            return Err(format!("oif {} vs {oif}", j["oif"]));
        }
    }
    Ok(())
}

#[test]
fn the_model_agrees_with_the_kernel() {
    assert!(
        netns_tests::can_run(),
        "the differential test needs root and ip"
    );
    let seed = std::env::var("DIFFERENTIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("differential: DIFFERENTIAL_SEED={seed}");
    let mut rng = Rng(seed);
    let w = World::build();
    w.warm_up();
    let mut next_id = 0;
    let mut failures = Vec::new();
    for flags in [
        &[][..],
        &["--lan", "on-link", "--debug"][..],
        &["--lan", "off"][..],
        &["--compat", "--debug"][..],
    ] {
        failures.extend(run_profile(&w, flags, &mut rng, seed, &mut next_id));
    }
    let _ = bin().stop(w.t.client());
    assert!(
        failures.is_empty(),
        "DIFFERENTIAL_SEED={seed}: the model and the kernel differ ({} findings):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
