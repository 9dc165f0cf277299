//! The evaluator against the kernel: thousands of packets generated at random, each walked
//! through the running firewall by `bitmask_root::nft::eval` (with the kernel's own route
//! lookups) and sent for real in the leak-matrix topology, where taps on the far end of every
//! link (and on the client's `lo`, and a UDP listener for what the client receives itself)
//! see whether it arrived, where, and with which addresses. Every difference between the
//! model and the kernel fails the test with the packet, the rule the model chose and the plan.
//!
//! Packets are generated from a seeded generator (`DIFFERENTIAL_SEED`, else the clock; the
//! seed is printed first and in every failure) over families, destinations from pools that
//! reach every rule (gateways, the LANs, other prefixes, multicast and broadcast, the resolver,
//! local stubs and addresses, the tunnel's side), protocols, ports, bound devices, and four
//! sources: this host, a container behind the bridge `ctr0` (forwarded), the VPN's side of the
//! tunnel (forwarded in by `tun0`: new connections, and replies of the container's connections
//! through the tunnel) and the LAN router (forwarded in by `eth0`). They are sent in batches:
//! each packet of a batch carries its own source port (TCP, UDP) or length (UDP, ICMP), by
//! which the taps tell them apart.
//!
//! The phases: the default profile, each `--lan` mode, `--forward off`, `firewall block`,
//! `--compat`, the default profile with the tunnel down, and `firewall block --lan off` with
//! the resolver routed outside the tunnel (so that `dns_guard` drops the rewritten queries).
//! After each, `firewall isup` must still say up (counters do not make a table "tampered"),
//! and the counters that `firewall status --json` reports must equal what the model says each
//! refusing rule refused (the probes, and the answers the kernel sends for the packets it
//! rejects: a TCP reset or an ICMP error is a packet this host sends, judged by the output
//! chain). A sample of packets is also asked through `firewall explain --json`. Every rule
//! must be reached, but for the few no packet of this topology can reach (named, with why).
//!
//! Run with `cargo test -p netns-tests --test differential -- --nocapture` (as root, after
//! `cargo build`); the per-rule counts are printed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use bitmask_root::firewall::route::KernelRoutes;
use bitmask_root::nft::decode::read_running;
use bitmask_root::nft::eval::{
    evaluate, ChainEnd, Evaluation, Fate, Origin, Packet, Routing, Transport,
};
use bitmask_root::plan::{Chain, Hook, IfPattern, Match, Rule};
use bitmask_root::policy::{Mode, Policy, Profile};
use common::bin;
use netns_tests::addr::*;
use netns_tests::container::{Bridge, Guest};
use netns_tests::probe::tap::{Packet as Seen, Tap};
use netns_tests::probe::udp::UdpListener;
use netns_tests::Topology;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Packets per phase.
const PER_PHASE: usize = 3000;
/// Packets per batch (each with its own length slot).
const BATCH: usize = 200;
/// The payload length of slot 0 (long enough that no frame is padded).
const LEN_BASE: usize = 64;
/// How long to wait for packets the model says arrive.
const WAIT: Duration = Duration::from_secs(3);
/// How long to wait for packets the model says do not arrive.
const SETTLE: Duration = Duration::from_millis(300);
/// The ports the client listens on (UDP), to see what it receives itself.
const LISTENED: [u16; 2] = [9, 53];

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

/// Who sends a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// The client itself (a socket bound to `via`, or routed).
    Host,
    /// The container behind the bridge `ctr0`: forwarded, in by `ctr0`.
    Container,
    /// The VPN's side (10.41.0.1): forwarded, in by `tun0`.
    Tunnel,
    /// The LAN router (192.168.1.1, fd00:1::1): forwarded, in by `eth0`.
    Lan,
    /// The container to its neighbour on the bridge (172.17.0.3, fd00:17::3, link-local,
    /// multicast): bridged, seen by the IP hooks with `br_netfilter`.
    Neighbour,
}

impl Sender {
    /// The interface a forwarded probe comes in by.
    fn iif(self) -> Option<&'static str> {
        match self {
            Sender::Host => None,
            Sender::Container | Sender::Neighbour => Some("ctr0"),
            Sender::Tunnel => Some("tun0"),
            Sender::Lan => Some("eth0"),
        }
    }
    /// The source address of a forwarded probe to a global destination `dst`.
    fn src(self, dst: IpAddr) -> Option<IpAddr> {
        let v4 = dst.is_ipv4();
        match self {
            Sender::Host => None,
            Sender::Container | Sender::Neighbour if v4 => Some(IpAddr::V4(CONTAINER_V4)),
            Sender::Container | Sender::Neighbour => Some(IpAddr::V6(CONTAINER_V6)),
            Sender::Tunnel => Some(IpAddr::V4(VPN_RESOLVER_TCP)),
            Sender::Lan if v4 => Some(IpAddr::V4(ROUTER_LAN_V4)),
            Sender::Lan => Some(IpAddr::V6(ROUTER_LAN_V6)),
        }
    }
}

/// Whether an address is link-local or link-scope multicast (IPv6): a packet to it leaves by
/// the sender's link, from its link-local address.
fn link_scope(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(_) => false,
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            (s & 0xffc0) == 0xfe80 || (s & 0xff0f) == 0xff02
        }
    }
}

/// One packet to send and to evaluate.
#[derive(Debug, Clone)]
struct Probe {
    dst: IpAddr,
    kind: Kind,
    /// The socket's bound device (this host's packets).
    via: Option<String>,
    sender: Sender,
    /// The source address of a forwarded or bridged probe.
    src: Option<IpAddr>,
    /// For a reply from the tunnel's side: the position, in its batch, of the container's
    /// probe it answers (sent just before).
    answers: Option<usize>,
    /// Whether it is a reply of a connection conntrack knows (its probe went through).
    reply: bool,
    /// Payload length (UDP, ICMP): the probe's identity within its batch.
    payload: usize,
}

impl Probe {
    fn new(sender: Sender, dst: IpAddr, kind: Kind) -> Probe {
        Probe {
            dst,
            kind,
            via: None,
            sender,
            src: sender.src(dst),
            answers: None,
            reply: false,
            payload: 0,
        }
    }

    fn describe(&self) -> String {
        let what = match self.kind {
            Kind::Udp { sport, dport } => format!("udp {sport} -> {}:{dport}", self.dst),
            Kind::Tcp { sport, dport } => format!("tcp {sport} -> {}:{dport}", self.dst),
            Kind::Icmp { icmp_type, hops } => {
                format!("icmp type {icmp_type} hop limit {hops} -> {}", self.dst)
            }
        };
        let from = match (self.sender, &self.via) {
            (Sender::Host, Some(v)) => format!(" from a socket bound to {v}"),
            (Sender::Host, None) => " as routed".to_string(),
            (s, _) => format!(
                " {} from {} in by {}{}",
                if s == Sender::Neighbour {
                    "bridged"
                } else {
                    "forwarded"
                },
                self.src.map(|a| a.to_string()).unwrap_or_default(),
                s.iif().unwrap_or_default(),
                if self.answers.is_some() {
                    format!(", a reply (conntrack knows it: {})", self.reply)
                } else {
                    String::new()
                }
            ),
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
            src: self.src,
            dst: self.dst,
            transport,
            hop_limit: hops,
            origin: match (self.sender, self.sender.iif()) {
                (Sender::Neighbour, Some(bridge)) => Origin::Bridged {
                    bridge: bridge.into(),
                },
                (_, Some(iif)) => Origin::Forwarded { iif: iif.into() },
                (_, None) => Origin::Local {
                    bound_device: self.via.clone(),
                    uid: Some(0),
                },
            },
            reply: self.reply,
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
/// the bridge `ctr0` in the client, routes from the VPN's side and the LAN to the container,
/// taps on the far end of every link of the client and on its `lo`, UDP listeners in the
/// client.
struct World {
    t: Topology,
    ctr: Guest,
    /// The container's neighbour on the bridge.
    ctr2: Guest,
    /// The link-local addresses of the two containers.
    ctr_ll: Ipv6Addr,
    ctr2_ll: Ipv6Addr,
    taps: Vec<(&'static str, Tap)>,
    /// What the client itself receives on the [`LISTENED`] ports.
    listeners: Vec<UdpListener>,
    /// The LAN router's DHCP port: a container's unicast DHCP gets no ICMP error back (which
    /// the forward chain would refuse with `--lan off`, at a moment the model does not know).
    _dhcp: UdpListener,
    /// Link-local address of the peer on each client device.
    peer_ll: BTreeMap<&'static str, Ipv6Addr>,
    /// The client's addresses per device.
    addrs: BTreeMap<&'static str, Vec<IpAddr>>,
    /// Whether the client's bridges hand IP packets to netfilter (`br_netfilter`).
    br_netfilter: bool,
}

impl World {
    fn build() -> World {
        let t = Topology::builder()
            .tunnel(true)
            .second_uplink(true)
            .gateways(&[IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)])
            .build()
            .expect("topology");
        let c = t.client();
        // IGMP reports of the bridge (its multicast snooping joins 224.0.0.106) are packets
        // of the client that no rule opens: sent at moments nobody chose, they would be
        // refused and counted. Reports repeat quickly here, and snooping is turned off below.
        c.sysctl(&[(
            "net.ipv4.conf.default.igmpv3_unsolicited_report_interval",
            "10",
        )])
        .expect("IGMP report interval");
        let bridge = Bridge::create(
            c,
            "ctr0",
            (DOCKER_BRIDGE_V4, 16),
            Some((DOCKER_BRIDGE_V6, 64)),
        )
        .expect("bridge");
        let ctr = bridge
            .attach(c, "ctr", "vethctr0", CONTAINER_V4, Some(CONTAINER_V6))
            .expect("container");
        c.ip(&[
            "link",
            "set",
            "ctr0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .expect("bridge without snooping");
        std::thread::sleep(Duration::from_millis(500));
        let ctr2 = bridge
            .attach(
                c,
                "ctr2",
                "vethctr1",
                Ipv4Addr::new(172, 17, 0, 3),
                Some(Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 3)),
            )
            .expect("second container");
        // The container answers ARP for every address (as a router on a real link would be
        // reached through its gateway): a packet of the client that a bound socket sends by
        // ctr0 to any address leaves, rather than waiting for a neighbour that never answers.
        ctr.ns()
            .sysctl(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.eth0.proxy_arp_pvlan", "1"),
                ("net.ipv4.neigh.eth0.proxy_delay", "0"),
            ])
            .expect("container proxy ARP");
        netns_tests::container::enable_forwarding(c).expect("forwarding in the client");
        // The answers the client's rejects send (ICMP errors) are counted by its rules: none
        // may be skipped by the kernel's rate limits.
        c.sysctl(&[
            ("net.ipv4.icmp_ratemask", "0"),
            ("net.ipv4.icmp_msgs_per_sec", "1000000"),
            ("net.ipv4.icmp_msgs_burst", "1000000"),
            ("net.ipv6.icmp.ratelimit", "0"),
        ])
        .expect("ICMP rate limits off in the client");
        let vpn = t.vpn().expect("vpn");
        let router2 = t.router2().expect("router2");
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vpn.ip_batch(&lines(&[
            "route add 172.17.0.0/16 via 10.42.0.2 dev tunpeer",
            "route add 192.168.1.0/24 via 10.42.0.2 dev tunpeer",
            "route add 192.168.2.0/24 via 10.42.0.2 dev tunpeer",
        ]))
        .expect("routes from the VPN's side");
        t.router()
            .ip_batch(&lines(&[
                "route add 172.17.0.0/16 via 192.168.1.2 dev lan0",
                "route add fd00:17::/64 via fd00:1::2 dev lan0",
            ]))
            .expect("routes from the LAN");
        let taps = vec![
            ("eth0", Tap::start(t.router(), "lan0").expect("tap")),
            ("eth1", Tap::start(router2, "lan0").expect("tap")),
            ("tun0", Tap::start(vpn, "tunpeer").expect("tap")),
            ("ctr0", Tap::start(ctr.ns(), "eth0").expect("tap")),
            ("ctr2", Tap::start(ctr2.ns(), "eth0").expect("tap")),
            ("lo", Tap::start(c, "lo").expect("tap")),
        ];
        let listeners = LISTENED
            .iter()
            .map(|port| {
                UdpListener::start(c, SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port))
                    .expect("listener")
            })
            .collect();
        let mut peer_ll = BTreeMap::new();
        peer_ll.insert(
            "eth0",
            Topology::link_local(t.router(), "lan0").expect("ll"),
        );
        peer_ll.insert("eth1", Topology::link_local(router2, "lan0").expect("ll"));
        peer_ll.insert("tun0", Topology::link_local(vpn, "tunpeer").expect("ll"));
        peer_ll.insert("ctr0", Topology::link_local(ctr.ns(), "eth0").expect("ll"));
        let mut addrs = BTreeMap::new();
        for dev in ["eth0", "eth1", "tun0", "ctr0"] {
            let out = c
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
        let dhcp = UdpListener::start(t.router(), SocketAddr::new(IpAddr::V4(ROUTER_LAN_V4), 67))
            .expect("DHCP listener");
        let br_netfilter = c
            .exec_ok("cat", &["/proc/sys/net/bridge/bridge-nf-call-iptables"])
            .is_ok_and(|v| v.trim() == "1");
        eprintln!("differential: br_netfilter in the client: {br_netfilter}");
        let ctr_ll = Topology::link_local(ctr.ns(), "eth0").expect("ll");
        let ctr2_ll = Topology::link_local(ctr2.ns(), "eth0").expect("ll");
        World {
            t,
            ctr,
            ctr2,
            ctr_ll,
            ctr2_ll,
            taps,
            listeners,
            peer_ll,
            addrs,
            br_netfilter,
            _dhcp: dhcp,
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
            (IpAddr::V4(CONTAINER_V4), None),
            (IpAddr::V6(CONTAINER_V6), None),
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
        for (ns, dst) in [
            (self.ctr.ns(), IpAddr::V4(DOCKER_BRIDGE_V4)),
            (self.ctr.ns(), ip("172.17.0.3")),
            (self.ctr.ns(), ip("fd00:17::3")),
            (self.ctr2.ns(), IpAddr::V4(CONTAINER_V4)),
            (self.ctr.ns(), IpAddr::V6(DOCKER_BRIDGE_V6)),
            (self.t.vpn().expect("vpn"), IpAddr::V4(CLIENT_TUN_V4)),
            (self.t.router(), IpAddr::V4(CLIENT_LAN_V4)),
            (self.t.router(), IpAddr::V6(CLIENT_LAN_V6)),
        ] {
            let _ = icmp_echo(ns, dst, &Default::default());
        }
    }

    fn clear(&self) {
        for (_, tap) in &self.taps {
            tap.clear();
        }
        for l in &self.listeners {
            l.clear();
        }
    }
}

/// What the generator may send in a phase.
struct Scope {
    /// Whether the tunnel is up (its side can send).
    tunnel: bool,
}

/// Generates one probe, or two (a container's probe through the tunnel and the reply from
/// the tunnel's side); identity fields are filled in later.
fn generate(rng: &mut Rng, w: &World, scope: &Scope) -> Vec<Probe> {
    let dports: [u16; 12] = [53, 53, 53, 9, 80, 443, 631, 67, 547, 1900, 5353, 22];
    let l4 = |rng: &mut Rng, dport: u16| match rng.below(10) {
        0..=4 => Kind::Udp { sport: 0, dport },
        5..=7 => Kind::Tcp { sport: 0, dport },
        _ => Kind::Icmp {
            icmp_type: 0,
            hops: 64,
        },
    };
    let udp = |dport: u16| Kind::Udp { sport: 0, dport };
    let host = |dst: IpAddr, kind: Kind, via: Option<&str>| {
        let mut p = Probe::new(Sender::Host, dst, kind);
        p.via = via.map(str::to_string);
        p
    };
    // Packets that only some rules take, often enough that each such rule sees a dozen
    // or more in every run (the test fails when a rule sees none).
    match rng.below(100) {
        0..=2 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0"]);
            let dst = if rng.chance(60) {
                ip("255.255.255.255")
            } else {
                IpAddr::V4(ROUTER_LAN_V4)
            };
            let kind = Kind::Udp {
                sport: 68,
                dport: 67,
            };
            return vec![host(dst, kind, Some(dev))];
        }
        3..=5 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0"]);
            let kind = Kind::Udp {
                sport: 546,
                dport: 547,
            };
            return vec![host(ip("ff02::1:2"), kind, Some(dev))];
        }
        6..=13 => {
            let dev = *rng.pick(&["eth0", "eth1", "ctr0", "tun0"]);
            let ll = IpAddr::V6(w.peer_ll[dev]);
            let dst = *rng.pick(&[ip("ff02::2"), ip("ff02::1"), ll, ll]);
            let kind = Kind::Icmp {
                icmp_type: *rng.pick(&[133, 135, 136, 128]),
                hops: if rng.chance(75) { 255 } else { 64 },
            };
            return vec![host(dst, kind, Some(dev))];
        }
        14..=27 => {
            // Discovery multicast, bound (most often to the default device) or routed.
            let (dst, port) = *rng.pick(&[
                ("239.255.255.250", 1900u16),
                ("224.0.0.251", 5353),
                ("ff05::c", 1900),
                ("ff02::fb", 5353),
                ("239.1.2.3", 5353),
                ("ff02::fb", 9),
            ]);
            let scoped = dst.starts_with("ff02");
            let via = (scoped || rng.chance(80))
                .then(|| *rng.pick(&["eth0", "eth0", "eth0", "eth1", "ctr0", "tun0"]));
            let kind = if rng.chance(85) {
                udp(port)
            } else {
                Kind::Icmp {
                    icmp_type: 0,
                    hops: 64,
                }
            };
            return vec![host(ip(dst), kind, via)];
        }
        28..=31 => {
            // Local stubs and loopback.
            let dst = ip(rng.pick::<&str>(&["127.0.0.53", "127.0.1.1", "127.0.0.1", "::1"]));
            let port = if rng.chance(80) { 53 } else { 9 };
            let kind = if rng.chance(70) {
                udp(port)
            } else {
                Kind::Tcp {
                    sport: 0,
                    dport: port,
                }
            };
            return vec![host(dst, kind, None)];
        }
        32..=35 => {
            // The container to this host (fib daddr type local), unicast DHCP (its multicast
            // goes to the neighbour: see below), the LANs, or TCP out of the tunnel (IPv6).
            let (dst, kind) = match rng.below(7) {
                0 => (
                    IpAddr::V4(ROUTER_LAN_V4),
                    Kind::Udp {
                        sport: 68,
                        dport: 67,
                    },
                ),
                1 => {
                    let dst = ip(rng.pick::<&str>(&["192.168.1.1", "192.168.2.1", "fd00:1::1"]));
                    let dport = *rng.pick(&dports);
                    (dst, l4(rng, dport))
                }
                2 => (
                    ip("2001:db8:1::10"),
                    Kind::Tcp {
                        sport: 0,
                        dport: 443,
                    },
                ),
                _ => (
                    ip(rng.pick::<&str>(&[
                        "172.17.0.1",
                        "192.168.1.2",
                        "10.42.0.2",
                        "fd00:17::1",
                        "fd00:1::2",
                    ])),
                    udp(*rng.pick(&LISTENED)),
                ),
            };
            return vec![Probe::new(Sender::Container, dst, kind)];
        }
        36..=38 if scope.tunnel => {
            // A connection of the container through the tunnel, and the reply; or a new
            // connection from the tunnel's side.
            if rng.chance(60) {
                let dport = *rng.pick(&[9u16, 80, 443, 631, 22]);
                let out = Probe::new(Sender::Container, IpAddr::V4(VPN_RESOLVER_TCP), udp(dport));
                let mut back = Probe::new(Sender::Tunnel, IpAddr::V4(CONTAINER_V4), udp(0));
                back.answers = Some(usize::MAX); // filled in by the batch
                return vec![out, back];
            }
            let dst = ip(rng.pick::<&str>(&["172.17.0.2", "192.168.1.1", "192.168.2.1"]));
            let dport = *rng.pick(&dports);
            return vec![Probe::new(Sender::Tunnel, dst, l4(rng, dport))];
        }
        39..=42 => {
            // The LAN to the container (a routed subnet, a published port) or to this host.
            let dst = ip(rng.pick::<&str>(&[
                "172.17.0.2",
                "172.17.0.2",
                "fd00:17::2",
                "fd00:17::2",
                "192.168.1.2",
                "fd00:1::2",
            ]));
            let local = matches!(dst.to_string().as_str(), "192.168.1.2" | "fd00:1::2");
            let kind = if local {
                udp(*rng.pick(&LISTENED))
            } else {
                let dport = *rng.pick(&dports);
                l4(rng, dport)
            };
            return vec![Probe::new(Sender::Lan, dst, kind)];
        }
        43..=54 if w.br_netfilter => {
            // To the neighbour on the bridge: unicast, link-local, DHCPv6, neighbour
            // discovery, discovery multicast.
            let ll2 = IpAddr::V6(w.ctr2_ll);
            let icmp = |icmp_type: u8, hops: u8| Kind::Icmp { icmp_type, hops };
            let (dst, kind) = match rng.below(16) {
                0..=2 => {
                    let dst = ip(rng.pick::<&str>(&["172.17.0.3", "fd00:17::3"]));
                    let dport = *rng.pick(&[53u16, 9, 80]);
                    (dst, l4(rng, dport))
                }
                3..=4 => (ll2, *rng.pick(&[udp(9), icmp(0, 64)])),
                5 => (
                    ip("ff02::1:2"),
                    Kind::Udp {
                        sport: 546,
                        dport: 547,
                    },
                ),
                6 => (ip("ff02::2"), icmp(133, 255)),
                7 => (ip("fd00:17::3"), icmp(135, 255)),
                8 => (ll2, icmp(136, 255)),
                9..=10 => (ip("ff02::1"), icmp(0, 64)),
                _ => {
                    let (group, port) = *rng.pick(&[
                        ("239.255.255.250", 1900u16),
                        ("224.0.0.251", 5353),
                        ("ff05::c", 1900),
                        ("ff02::fb", 5353),
                        ("ff02::fb", 9),
                    ]);
                    (ip(group), udp(port))
                }
            };
            let mut p = Probe::new(Sender::Neighbour, dst, kind);
            if link_scope(dst) {
                p.src = Some(IpAddr::V6(w.ctr_ll));
            }
            return vec![p];
        }
        55..=62 => {
            // DNS, udp and tcp: this host's, bound to a physical device or as routed, and
            // the container's, IPv4 (rewritten) and IPv6 (not).
            let dns = |rng: &mut Rng| {
                if rng.chance(50) {
                    udp(53)
                } else {
                    Kind::Tcp {
                        sport: 0,
                        dport: 53,
                    }
                }
            };
            let kind = dns(rng);
            if rng.chance(50) {
                let dst = ip(rng.pick::<&str>(&[
                    "192.168.1.1",
                    "198.51.100.53",
                    "203.0.113.10",
                    "fd00:1::1",
                ]));
                let via = *rng.pick(&[None, Some("eth0"), Some("eth1"), Some("tun0")]);
                return vec![host(dst, kind, via)];
            }
            let dst = ip(rng.pick::<&str>(&[
                "192.168.1.1",
                "198.51.100.53",
                "fd00:1::1",
                "2001:db8:1::10",
            ]));
            return vec![Probe::new(Sender::Container, dst, kind)];
        }
        63..=72 => {
            // This host to its local networks, as routed or bound to their device (each LAN
            // rule is bound to an interface).
            let (dev, dst) = *rng.pick(&[
                ("eth0", "192.168.1.1"),
                ("eth0", "fd00:1::1"),
                ("eth0", "ll"),
                ("eth1", "192.168.2.1"),
                ("eth1", "fd00:2::1"),
                ("eth1", "ll"),
                ("ctr0", "172.17.0.2"),
                ("ctr0", "fd00:17::2"),
                ("ctr0", "ll"),
            ]);
            let ll = dst == "ll";
            let dst = if ll {
                IpAddr::V6(w.peer_ll[dev])
            } else {
                ip(dst)
            };
            let via = (ll || rng.chance(50)).then_some(dev);
            let dport = *rng.pick(&dports);
            return vec![host(dst, l4(rng, dport), via)];
        }
        73..=78 => {
            // The gateways (open to this host in clear, never to the container), DNS to them
            // included.
            let dst = ip(rng.pick::<&str>(&["198.51.100.1", "2001:db8:2::1"]));
            let dport = *rng.pick(&[1194u16, 443, 53]);
            let kind = l4(rng, dport);
            if rng.chance(35) {
                return vec![Probe::new(Sender::Container, dst, kind)];
            }
            let via = rng.chance(30).then_some("eth0");
            return vec![host(dst, kind, via)];
        }
        _ => {}
    }
    let dport = *rng.pick(&dports);
    let kind = l4(rng, dport);
    if rng.chance(30) {
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
        let v6 = [
            "2001:db8:1::10",
            "2001:db8:1::10",
            "2001:db8:2::1",
            "fd00:1::1",
            "fd00:2::1",
        ];
        let dst = if rng.chance(50) {
            ip(rng.pick::<&str>(&v4))
        } else {
            ip(rng.pick::<&str>(&v6))
        };
        return vec![Probe::new(Sender::Container, dst, kind)];
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
    // A bound physical device sends nothing to the container's prefixes: the LAN router
    // would route it back through the client (a second walk, not modelled).
    let to_container = |a: &&str| a.starts_with("172.17.") || a.starts_with("fd00:17:");
    let bound_v4: Vec<&str> = anywhere_v4
        .iter()
        .copied()
        .filter(|a| !to_container(a))
        .collect();
    let bound_v6: Vec<&str> = anywhere_v6
        .iter()
        .copied()
        .filter(|a| !to_container(a))
        .collect();
    let dst = match via {
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
            2..=6 => ip(rng.pick::<&str>(&bound_v4)),
            _ => ip(rng.pick::<&str>(&bound_v6)),
        },
    };
    vec![host(dst, kind, via)]
}

/// Sends probes from one namespace's thread, a little apart so that the taps keep up.
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
    } else if link_scope(p.dst) {
        // A guest's link-scope packets leave by its only link.
        scope = if_index("eth0");
    }
    let to = |port: u16| -> SockAddr {
        match p.dst {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), port).into(),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope)).into(),
        }
    };
    let any = |port: u16| -> SockAddr {
        if p.sender == Sender::Tunnel {
            // The VPN's side sends from the address behind the tunnel.
            SocketAddr::new(IpAddr::V4(VPN_RESOLVER_TCP), port).into()
        } else if v6 {
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
            if p.sender == Sender::Tunnel {
                s.bind(&any(0))?;
            }
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

/// Where a probe was seen: a tapped device (with the packet), or `host` (the client's own
/// listener received it).
fn sightings(w: &World, p: &Probe) -> Vec<(&'static str, Option<Seen>)> {
    let mut out = Vec::new();
    for (dev, tap) in &w.taps {
        for seen in tap.matching(|s| s.inbound && p.is(s)) {
            out.push((*dev, Some(seen)));
        }
    }
    if let (Sender::Container | Sender::Lan, Kind::Udp { sport, dport }) = (p.sender, p.kind) {
        if LISTENED.contains(&dport) {
            let n = w
                .listeners
                .iter()
                .flat_map(|l| l.datagrams())
                .filter(|d| d.from.port() == sport && d.payload.len() == p.payload)
                .count();
            out.extend((0..n).map(|_| ("host", None)));
        }
    }
    out
}

/// Where the model says the probe shows up.
struct Expect {
    dev: Option<&'static str>,
    dst: IpAddr,
    dport: Option<u16>,
    masquerade: Option<String>,
    src: Option<IpAddr>,
}

fn expectation(p: &Probe, ev: &Evaluation) -> Expect {
    let dev = match &ev.fate {
        Fate::Sent { .. } if p.sender == Sender::Neighbour && ev.rewrite.is_none() => Some("ctr2"),
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
        Fate::Delivered if p.sender == Sender::Host => Some("lo"),
        Fate::Delivered => Some("host"),
        Fate::Rejected { .. } | Fate::Dropped | Fate::NoRoute { .. } | Fate::Expired => None,
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
        src: p.src.or(ev.src),
    }
}

/// Compares one probe's sightings with the model; `Err` says how they differ.
fn compare(
    w: &World,
    p: &Probe,
    ev: &Evaluation,
    seen: &[(&'static str, Option<Seen>)],
) -> Result<(), String> {
    let e = expectation(p, ev);
    let devs: BTreeSet<&str> = seen.iter().map(|(d, _)| *d).collect();
    match e.dev {
        None if devs.is_empty() => Ok(()),
        None => Err(format!(
            "the model says it does not arrive, the kernel sent it by {devs:?}"
        )),
        Some(dev) => {
            // Multicast and broadcast out of the bridge reach every guest behind it.
            let behind: &[&str] = if dev == "ctr0" || dev == "ctr2" {
                &["ctr0", "ctr2"]
            } else {
                &[dev]
            };
            let group = match e.dst {
                IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
                IpAddr::V6(a) => a.is_multicast(),
            };
            let fits = if group {
                devs.iter().all(|d| behind.contains(d))
            } else {
                devs.len() == 1
            };
            if !fits || !devs.contains(dev) {
                return Err(format!(
                    "the model says it arrives by {dev}, the kernel's taps saw it by {devs:?}"
                ));
            }
            let Some((_, Some(pkt))) = seen.first() else {
                return Ok(()); // received by the client itself, on the port it was sent to
            };
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

/// The answer the kernel sends for a probe it rejected: a TCP reset or an ICMP error, a
/// packet of this host to the probe's source (none for what is dropped, and none for
/// multicast or broadcast destinations, which get no ICMP error).
fn answer(w: &World, p: &Probe, ev: &Evaluation) -> Option<Packet> {
    let Fate::Rejected { tcp_reset } = ev.fate else {
        return None;
    };
    let to = p.src.or(ev.src)?;
    let group = match p.dst {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    if group {
        return None;
    }
    // With br_netfilter, the reset for a packet that came in through a bridge port is sent
    // straight out of that port, past the output hook.
    let bridge_port = matches!(p.sender, Sender::Container | Sender::Neighbour);
    if tcp_reset && bridge_port && w.br_netfilter {
        return None;
    }
    let transport = match (p.kind, tcp_reset) {
        (Kind::Tcp { sport, dport }, true) => Transport::Tcp {
            sport: dport,
            dport: sport,
        },
        _ => Transport::Icmp {
            icmp_type: if to.is_ipv4() { 3 } else { 1 },
        },
    };
    Some(Packet::local(to, transport))
}

/// Rules of `chain` that no packet of this phase can reach, and why.
fn unreachable_here(
    chain: &Chain,
    rule: &Rule,
    phase: &Phase,
    br_netfilter: bool,
) -> Option<&'static str> {
    let link_scope = |m: &Match| match m {
        Match::HopLimit(255) => true,
        Match::Daddr(p) => match p.addr() {
            IpAddr::V4(a) => a.is_multicast(),
            IpAddr::V6(a) => a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80,
        },
        _ => false,
    };
    if chain.hook == Hook::Forward && rule.matches.iter().any(link_scope) {
        if !br_netfilter {
            return Some(
                "link-scope and multicast destinations, and hop limit 255, reach the forward hook only between guests on one bridge, with br_netfilter, which this kernel does not have (the unit tests walk them)",
            );
        }
        let on_other = rule
            .matches
            .iter()
            .any(|m| matches!(m, Match::Oif(p) if p.stem() != "ctr0"));
        if on_other {
            return Some(
                "link-local traffic is forwarded only between guests on one bridge, and this interface is no bridge here (the unit tests walk it)",
            );
        }
    }
    if chain.hook == Hook::Prerouting && rule.matches.contains(&Match::Iif(IfPattern::exact("lo")))
    {
        return Some(
            "what comes back in by lo had its NAT settled at output: the kernel never walks a packet through this rule (the unit tests ask the model)",
        );
    }
    let tunnel = |m: &Match| matches!(m, Match::Oif(p) | Match::Iif(p) if p.is_wildcard());
    if phase.tunnel_down && rule.matches.iter().any(tunnel) {
        return Some("the tunnel is down");
    }
    if phase.tunnel_down && rule.action == bitmask_root::plan::Action::Masquerade {
        return Some(
            "the tunnel is down: every packet to the resolver is refused before source NAT",
        );
    }
    None
}

/// Per rule (chain, index): probes it decided, rewrote, or ended a chain for; and what the
/// model says each refusing rule refused (probes and the answers to them).
#[derive(Default)]
struct Coverage {
    hits: BTreeMap<(String, usize), usize>,
    refused: BTreeMap<(String, usize), u64>,
    answers_refused: BTreeMap<(String, usize), u64>,
}

impl Coverage {
    fn add(&mut self, ev: &Evaluation) {
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
            *self.hits.entry(key).or_default() += 1;
        }
        if let Some(key) = refused_by(ev) {
            *self.refused.entry(key).or_default() += 1;
        }
    }
}

fn refused_by(ev: &Evaluation) -> Option<(String, usize)> {
    match (&ev.decided_by, &ev.fate) {
        (Some(r), Fate::Rejected { .. } | Fate::Dropped) => Some((r.chain.clone(), r.index)),
        _ => None,
    }
}

/// One phase of the run: a firewall and a state of the network.
struct Phase {
    /// Global options.
    flags: &'static [&'static str],
    /// `firewall block` rather than `firewall start GATEWAY...`.
    block: bool,
    /// The tunnel is down.
    tunnel_down: bool,
    /// The resolver is routed by the second uplink, outside the tunnel.
    resolver_outside: bool,
}

impl Phase {
    fn name(&self) -> String {
        let mut s = format!(
            "{} {:?}",
            if self.block { "block" } else { "start" },
            self.flags
        );
        if self.tunnel_down {
            s.push_str(", tunnel down");
        }
        if self.resolver_outside {
            s.push_str(", resolver routed via eth1");
        }
        s
    }

    /// The policy the flags ask for.
    fn policy(&self, gws: &[IpAddr]) -> Policy {
        let mut b = Policy::builder();
        b = if self.block {
            b.mode(Mode::Block)
        } else {
            b.gateways(gws.iter().copied())
        };
        let mut words = self.flags.iter();
        while let Some(flag) = words.next() {
            b = match *flag {
                "--compat" => b.profile(Profile::Compat),
                "--debug" => b.debug(true),
                "--lan" => b.lan(words.next().expect("mode").parse().expect("lan mode")),
                "--forward" => b.forward(*words.next().expect("on|off") == "on"),
                other => panic!("no such flag in this test: {other}"),
            };
        }
        b.build().expect("policy")
    }
}

/// Runs one phase: start the firewall, generate, evaluate, send, observe, compare.
/// Which rules (by chain and nft text) packets reached, over all phases.
#[derive(Default)]
struct RunCoverage {
    /// Rules some packet reached.
    reached: std::collections::BTreeSet<String>,
    /// Rules a phase's packets never reached, with those phases.
    missed: std::collections::BTreeMap<String, Vec<String>>,
}

fn run_phase(
    w: &World,
    phase: &Phase,
    rng: &mut Rng,
    seed: u64,
    next_id: &mut usize,
    coverage_all: &mut RunCoverage,
) -> Vec<String> {
    let b = bin();
    let name = phase.name();
    let gws = [IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)];
    let c = w.t.client();
    if phase.tunnel_down {
        w.t.tunnel_down().expect("tunnel down");
    }
    if phase.resolver_outside {
        w.t.route_via_second_uplink(IpAddr::V4(VPN_RESOLVER))
            .expect("resolver route");
    }
    if phase.block {
        let mut args: Vec<&str> = phase.flags.to_vec();
        args.extend(["firewall", "block"]);
        let out = b.run(c, &args).expect("firewall block");
        assert!(out.success(), "{name}: firewall block: {}", out.stderr);
    } else {
        b.start(c, phase.flags, &gws).expect("firewall start");
    }
    let plan_text = listing(w);

    // The running table, read back and decoded, is the plan for this network.
    let policy = phase.policy(&gws);
    let (running, planned) = c
        .run(|| {
            let (_, net) = KernelRoutes::open().expect("network");
            let running = read_running("bitmask")
                .expect("read back")
                .expect("running");
            let planned = bitmask_root::firewall::plan(&policy, &net).expect("plan");
            (running, planned)
        })
        .expect("client thread");
    let rs = running.ruleset.clone();
    assert_eq!(
        rs.chains, planned.chains,
        "{name}: the running rules are not the plan"
    );
    assert_eq!(
        rs.sets, planned.sets,
        "{name}: the running sets are not the plan"
    );
    assert_eq!(
        rs.record,
        bitmask_root::plan::record(&policy),
        "{name}: the running table records another policy"
    );

    let scope = Scope {
        tunnel: !phase.tunnel_down,
    };
    let mut failures = Vec::new();
    let mut coverage = Coverage::default();
    let mut explained = 0;
    let mut sent = 0;
    let mut answers = 0;
    let mut diverged: BTreeSet<(String, usize)> = BTreeSet::new();
    let mut batch = 0;
    while sent < PER_PHASE {
        let mut probes: Vec<Probe> = Vec::new();
        while probes.len() < BATCH.min(PER_PHASE - sent) {
            let mut more = generate(rng, w, &scope);
            if more.len() == 2 {
                more[1].answers = Some(probes.len());
            }
            probes.extend(more);
        }
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
        for slot in 0..probes.len() {
            // A reply: from the port the container's probe went to, to its port.
            if let Some(i) = probes[slot].answers {
                if let Kind::Udp { sport, dport } = probes[i].kind {
                    probes[slot].kind = Kind::Udp {
                        sport: dport,
                        dport: sport,
                    };
                }
            }
        }
        // The model, with the kernel's routes, in the client. A reply is one when the probe
        // it answers went through (conntrack confirmed its connection).
        let (evs, answer_evs): (Vec<Evaluation>, Vec<Evaluation>) = c
            .run(|| {
                let (routes, _) = KernelRoutes::open().expect("routes");
                let mut evs: Vec<Evaluation> = Vec::new();
                let mut answer_evs = Vec::new();
                for p in probes.iter_mut() {
                    if let Some(j) = p.answers {
                        p.reply = evs[j].fate.passes();
                    }
                    let ev = evaluate(&rs, &p.packet(), &routes).expect("evaluates");
                    if let Some(a) = answer(w, p, &ev) {
                        answer_evs
                            .push(evaluate(&rs, &a, &routes as &dyn Routing).expect("evaluates"));
                    }
                    evs.push(ev);
                }
                (evs, answer_evs)
            })
            .expect("client thread");
        for a in &answer_evs {
            answers += 1;
            if let Some(key) = refused_by(a) {
                *coverage.answers_refused.entry(key).or_default() += 1;
            }
        }
        // The kernel.
        w.clear();
        let from = |s: Sender| -> Vec<Probe> {
            probes.iter().filter(|p| p.sender == s).cloned().collect()
        };
        c.run({
            let ps = from(Sender::Host);
            move || send_all(&ps)
        })
        .expect("client sends");
        w.ctr
            .ns()
            .run({
                let mut ps = from(Sender::Container);
                ps.extend(from(Sender::Neighbour));
                move || send_all(&ps)
            })
            .expect("container sends");
        // The container's connections are through before their replies come.
        std::thread::sleep(Duration::from_millis(20));
        if scope.tunnel {
            w.t.vpn()
                .expect("vpn")
                .run({
                    let ps = from(Sender::Tunnel);
                    move || send_all(&ps)
                })
                .expect("the tunnel's side sends");
        }
        w.t.router()
            .run({
                let ps = from(Sender::Lan);
                move || send_all(&ps)
            })
            .expect("the LAN sends");
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
            coverage.add(ev);
            let seen = sightings(w, p);
            if let Err(why) = compare(w, p, ev, &seen) {
                failures.push(format!(
                    "seed {seed}, {name}, packet {}: {why}\n  model: {:?}, rule {}, rewrite {:?}, masquerade {:?}, route {:?}, rerouted {:?}\n  chains: {:?}\n  seen: {:?}",
                    p.describe(),
                    ev.fate,
                    ev.decided_by.as_ref().map_or("(none: policy accept)".to_string(), |r| format!("`{}` (chain {})", r.text, r.chain)),
                    ev.rewrite.as_ref().map(|r| (r.dst, r.dport)),
                    ev.masquerade.as_ref().map(|m| &m.oif),
                    ev.route,
                    ev.rerouted,
                    ev.steps,
                    seen.iter().map(|(d, s)| format!("{d}: {}", s.as_ref().map_or("received".to_string(), Seen::describe))).collect::<Vec<_>>(),
                ));
            }
            // Every 40th packet is also asked through the command line.
            if (sent + i) % 40 == 0 && p.answers.is_none() {
                explained += 1;
                if let Err(why) = cross_check_cli(w, &b, p, ev) {
                    failures.push(format!("seed {seed}, {name}, packet {}: firewall explain disagrees with the library: {why}", p.describe()));
                }
            }
        }
        sent += probes.len();
        batch += 1;
        // The counters after each batch, read back: the first batch where a rule's count
        // leaves the model's is named, with what the model refused with that rule in it.
        let counters = c
            .run(|| {
                read_running("bitmask")
                    .expect("read back")
                    .expect("running")
                    .counters
            })
            .expect("client thread");
        for (key, counted) in &counters {
            let model = coverage.refused.get(key).copied().unwrap_or(0)
                + coverage.answers_refused.get(key).copied().unwrap_or(0);
            if counted.packets != model && diverged.insert(key.clone()) {
                let mine: Vec<String> = probes
                    .iter()
                    .zip(&evs)
                    .filter(|(_, e)| refused_by(e).as_ref() == Some(key))
                    .map(|(p, _)| p.describe())
                    .collect();
                failures.push(format!(
                    "seed {seed}, {name}: after batch {batch}, rule #{} of chain {} counted {} packets, the model {model}; in this batch the model refused with it: {mine:#?}",
                    key.1, key.0, counted.packets
                ));
            }
        }
    }

    // Counters: what each refusing rule counted is what the model says it refused (the
    // probes and the answers to them), and isup still says up.
    let isup = b.isup(c, &[]).expect("isup");
    if isup != Some(0) {
        failures.push(format!(
            "{name}: firewall isup exited {isup:?} after the traffic"
        ));
    }
    let out = b.run(c, &["firewall", "status", "--json"]).expect("status");
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status JSON");
    if status["mode"].as_str() != Some(if phase.block { "block" } else { "connect" }) {
        failures.push(format!("{name}: status says mode {}", status["mode"]));
    }
    let filtered = rs.chains.iter().any(|ch| ch.hook == Hook::Forward);
    if status["forwarding"]["filtered"].as_bool() != Some(filtered) {
        failures.push(format!(
            "{name}: status says forwarding {}, the rules have a forward chain: {filtered}",
            status["forwarding"]
        ));
    }
    for rule in status["refused"]["rules"]
        .as_array()
        .expect("counted rules")
    {
        let key = (
            rule["chain"].as_str().unwrap_or_default().to_string(),
            rule["index"].as_u64().unwrap_or_default() as usize,
        );
        let counted = rule["packets"].as_u64().unwrap_or_default();
        let model = coverage.refused.get(&key).copied().unwrap_or(0)
            + coverage.answers_refused.get(&key).copied().unwrap_or(0);
        if counted != model {
            failures.push(format!(
                "seed {seed}, {name}: rule `{}` (chain {} #{}) counted {counted} packets, the model refused {model} with it",
                rule["rule"], key.0, key.1
            ));
        }
    }

    let mismatches = failures.len();
    eprintln!(
        "\n== {name}: {sent} packets, {mismatches} mismatches, {answers} answers to rejected packets modelled, {explained} also asked through firewall explain"
    );
    let mut never = Vec::new();
    for chain in &rs.chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            let text = bitmask_root::render::rule_text(rule);
            let key = (chain.name.clone(), i);
            let n = coverage.hits.get(&key).copied().unwrap_or(0);
            let refused = coverage.refused.get(&key).copied().unwrap_or(0);
            let answered = coverage.answers_refused.get(&key).copied().unwrap_or(0);
            let note = match (n, unreachable_here(chain, rule, phase, w.br_netfilter)) {
                (0, Some(why)) => format!("  (not reachable here: {why})"),
                (0, None) => {
                    never.push(format!("{}: {text}", chain.name));
                    String::new()
                }
                _ => {
                    coverage_all
                        .reached
                        .insert(format!("{}: {text}", chain.name));
                    String::new()
                }
            };
            eprintln!(
                "  {n:>5} reached{}{} | {} #{i}: {text}{note}",
                if refused > 0 {
                    format!(", {refused:>4} refused")
                } else {
                    String::from("              ")
                },
                if answered > 0 {
                    format!(" (+{answered:>3} answers)")
                } else {
                    String::from("               ")
                },
                chain.name
            );
        }
    }
    // A rule that no packet of this phase reached must be reached in another phase whose
    // plan holds it (checked once all phases ran): random packets reach a rare rule in most
    // phases, not always in every one.
    for rule in never {
        coverage_all
            .missed
            .entry(rule)
            .or_default()
            .push(name.clone());
    }
    if !failures.is_empty() {
        failures.push(format!("the plan for {name}:\n{plan_text}"));
    }
    if phase.tunnel_down {
        w.t.tunnel_up().expect("tunnel up");
    }
    if phase.resolver_outside {
        c.ip(&["route", "del", &format!("{VPN_RESOLVER}/32")])
            .expect("resolver route removed");
    }
    failures
}

/// `nft list table inet bitmask` in the client (with the counters).
fn listing(w: &World) -> String {
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
    if p.sender == Sender::Neighbour {
        return Ok(()); // the command line asks about routed packets only
    }
    match (p.sender.iif(), p.src) {
        (Some(iif), Some(src)) => {
            args.extend(["--in".into(), iif.into(), "--src".into(), src.to_string()])
        }
        _ => args.extend(["--uid".into(), "0".into()]),
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
    let mut coverage_all = RunCoverage::default();
    let phase = |flags, block, tunnel_down, resolver_outside| Phase {
        flags,
        block,
        tunnel_down,
        resolver_outside,
    };
    for p in [
        phase(&[], false, false, false),
        phase(&["--lan", "on-link", "--debug"], false, false, false),
        phase(&["--lan", "off"], false, false, false),
        phase(&["--forward", "off"], false, false, false),
        phase(&[], true, false, false),
        phase(&["--compat", "--debug"], false, false, false),
        phase(&[], false, true, false),
        phase(&["--lan", "off"], true, false, true),
    ] {
        failures.extend(run_phase(
            &w,
            &p,
            &mut rng,
            seed,
            &mut next_id,
            &mut coverage_all,
        ));
    }
    for (rule, phases) in &coverage_all.missed {
        if !coverage_all.reached.contains(rule) {
            failures.push(format!(
                "seed {seed}: no packet reached `{rule}` in any phase whose plan holds it ({phases:?})"
            ));
        }
    }
    let _ = bin().stop(w.t.client());
    assert!(
        failures.is_empty(),
        "DIFFERENTIAL_SEED={seed}: the model and the kernel differ ({} findings):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
