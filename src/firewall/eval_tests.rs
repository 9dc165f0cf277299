//! The evaluator on every rule of every profile: for each plan, packets that each rule decides
//! (or rewrites), with the fate, the rule the kernel would pick (and its chain) and the
//! rewrite, on a fixed host: `eth0` (192.168.1.2/24, fd00:1::2/64, fe80::2/64), `eth1`
//! (192.168.2.2/24, fd00:2::2/64), `tun0` (10.42.0.2/24, `0.0.0.0/1` and `128.0.0.0/1` routed
//! into it as OpenVPN does), a container bridge `ctr0` (172.17.0.1/16, a container at
//! 172.17.0.2 and fd00:17::2), a public on-link `pub0` (100.64.5.2/24), gateways 198.51.100.1
//! and 2001:db8:2::1 routed by `eth0`, and multicast (224.0.0.0/4) routed by `eth0`.
//!
//! The profiles: the default one in each `--lan` mode, with and without `--debug`, with
//! forwarding covered (`--forward on`) or not, connecting (`firewall start`) or blocking
//! (`firewall block`), and `--compat`. Every rule of every plan must be reached by at least
//! one packet; the one rule no packet of the kernel can reach is named, with the reason, and
//! reached by a packet only the model can be asked about.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::discovery::{Interface, Network, Prefix};
use crate::nft::eval::{
    evaluate, ChainEnd, Evaluation, Fate, Origin, Packet, Route, RouteQuery, Transport,
};
use crate::plan::{plan, Ruleset, CHAIN_DNS_GUARD, CHAIN_OUTPUT};
use crate::policy::{LanMode, Mode, Policy, Profile};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn p(a: &str, len: u8) -> Prefix {
    Prefix::new(ip(a), len)
}

fn network() -> Network {
    let iface = |name: &str, index: u32, prefixes: Vec<Prefix>| Interface {
        name: name.into(),
        index,
        prefixes,
    };
    Network {
        interfaces: vec![
            iface("lo", 1, vec![p("127.0.0.1", 8), p("::1", 128)]),
            iface(
                "eth0",
                2,
                vec![p("192.168.1.2", 24), p("fd00:1::2", 64), p("fe80::2", 64)],
            ),
            iface("eth1", 3, vec![p("192.168.2.2", 24), p("fd00:2::2", 64)]),
            iface("tun0", 4, vec![p("10.42.0.2", 24)]),
            iface("ctr0", 5, vec![p("172.17.0.1", 16)]),
            iface("pub0", 6, vec![p("100.64.5.2", 24)]),
        ],
        default_v4: Some("eth0".into()),
        default_v6: Some("eth0".into()),
        ipv6: true,
    }
}

const LOCAL: [&str; 6] = [
    "192.168.1.2",
    "192.168.2.2",
    "10.42.0.2",
    "172.17.0.1",
    "fd00:1::2",
    "100.64.5.2",
];

/// The host's routing table with the tunnel up (`tunnel`) or down (its routes gone, the
/// resolver then routed by the default route), as the kernel would answer.
fn table(q: &RouteQuery<'_>, tunnel: bool) -> Result<Option<Route>, String> {
    let local = |oif: &str, src: &str| {
        Ok(Some(Route {
            oif: oif.into(),
            local: true,
            src: Some(ip(src)),
        }))
    };
    let dst = q.dst;
    if dst.is_loopback() {
        return local("lo", if dst.is_ipv4() { "127.0.0.1" } else { "::1" });
    }
    if LOCAL.iter().any(|a| ip(a) == dst) {
        return local("lo", &dst.to_string());
    }
    let src_of = |oif: &str, v4: bool| -> Option<IpAddr> {
        let a = match (oif, v4) {
            ("eth0", true) => "192.168.1.2",
            ("eth0", false) => "fd00:1::2",
            ("eth1", true) => "192.168.2.2",
            ("eth1", false) => "fd00:2::2",
            ("tun0", true) => "10.42.0.2",
            ("ctr0", true) => "172.17.0.1",
            ("pub0", true) => "100.64.5.2",
            _ => return None,
        };
        Some(ip(a))
    };
    let out = |oif: &str| {
        Ok(Some(Route {
            oif: oif.into(),
            local: false,
            src: src_of(oif, dst.is_ipv4()),
        }))
    };
    if let Some(dev) = q.oif {
        return out(dev);
    }
    let link_scope = match dst {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if q.iif.is_some() && link_scope {
        return Ok(None); // multicast, broadcast and link-local are not routed on
    }
    if dst == ip("2001:db8:dead::1") {
        return Ok(None); // unreachable
    }
    let inside = |a: &str, len: u8| {
        let net = p(a, len);
        net.addr().is_ipv4() == dst.is_ipv4() && net.contains(&Prefix::new(dst, net.max_len()))
    };
    let routes: [(&str, u8, &str); 14] = [
        ("192.168.1.0", 24, "eth0"),
        ("192.168.2.0", 24, "eth1"),
        ("10.42.0.0", 24, "tun0"),
        ("172.17.0.0", 16, "ctr0"),
        ("fd00:17::", 64, "ctr0"),
        ("100.64.5.0", 24, "pub0"),
        ("198.51.100.1", 32, "eth0"),
        ("224.0.0.0", 4, "eth0"),
        ("0.0.0.0", 1, "tun0"),
        ("128.0.0.0", 1, "tun0"),
        ("fd00:2::", 64, "eth1"),
        ("fe80::", 64, "eth0"),
        ("::", 0, "eth0"),
        ("0.0.0.0", 0, "eth0"),
    ];
    for (net, len, dev) in routes {
        if dev == "tun0" && !tunnel {
            continue;
        }
        if inside(net, len) {
            return out(dev);
        }
    }
    Ok(None)
}

fn routes(q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
    table(q, true)
}

fn routes_tunnel_down(q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
    table(q, false)
}

/// A packet under construction.
struct P(Packet);

fn udp(dst: &str, dport: u16) -> P {
    P(Packet::local(
        ip(dst),
        Transport::Udp {
            sport: 40000,
            dport,
        },
    ))
}
fn tcp(dst: &str, dport: u16) -> P {
    P(Packet::local(
        ip(dst),
        Transport::Tcp {
            sport: 40000,
            dport,
        },
    ))
}
fn icmp(dst: &str, icmp_type: u8) -> P {
    P(Packet::local(ip(dst), Transport::Icmp { icmp_type }))
}
impl P {
    fn via(mut self, dev: &str) -> P {
        self.0.origin = Origin::Local {
            bound_device: Some(dev.into()),
            uid: None,
        };
        self
    }
    fn sport(mut self, port: u16) -> P {
        self.0.transport = match self.0.transport {
            Transport::Udp { dport, .. } => Transport::Udp { sport: port, dport },
            Transport::Tcp { dport, .. } => Transport::Tcp { sport: port, dport },
            other => other,
        };
        self
    }
    fn hops(mut self, h: u8) -> P {
        self.0.hop_limit = h;
        self
    }
    /// Forwarded: in by `iif` from `src`.
    fn from(mut self, iif: &str, src: &str) -> P {
        self.0.origin = Origin::Forwarded { iif: iif.into() };
        self.0.src = Some(ip(src));
        self
    }
    /// Forwarded from the container (172.17.0.2, fd00:17::2) behind `ctr0`.
    fn ctr(self) -> P {
        let src = if self.0.dst.is_ipv4() {
            "172.17.0.2"
        } else {
            "fd00:17::2"
        };
        self.from("ctr0", src)
    }
    /// Bridged by `bridge` (br_netfilter) from `src`.
    fn bridged(mut self, bridge: &str, src: &str) -> P {
        self.0.origin = Origin::Bridged {
            bridge: bridge.into(),
        };
        self.0.src = Some(ip(src));
        self
    }
    /// A reply of a connection its destination opened.
    fn reply(mut self) -> P {
        self.0.reply = true;
        self
    }
}

fn sent(oif: &str) -> Fate {
    Fate::Sent { oif: oif.into() }
}
const REJECTED: Fate = Fate::Rejected { tcp_reset: false };
const RESET: Fate = Fate::Rejected { tcp_reset: true };
const NO_ROUTE: Fate = Fate::NoRoute {
    after_rewrite: false,
};

/// The deciding rule: its chain and its text; `None`: only chain policies applied.
type By = Option<(&'static str, &'static str)>;

fn out(text: &'static str) -> By {
    Some((CHAIN_OUTPUT, text))
}
fn fwd(text: &'static str) -> By {
    Some(("forward", text))
}
fn guard(text: &'static str) -> By {
    Some((CHAIN_DNS_GUARD, text))
}
const NONE: By = None;

/// One expectation: the packet, its fate, the deciding rule, the rewritten destination
/// (`""`: none).
type Case = (P, Fate, By, &'static str);

/// Evaluates every case with `routing`, checks it, and returns the rules they reached.
fn check(
    name: &str,
    rs: &Ruleset,
    routing: fn(&RouteQuery<'_>) -> Result<Option<Route>, String>,
    cases: Vec<Case>,
) -> BTreeSet<(String, usize)> {
    let mut reached = BTreeSet::new();
    for (pkt, fate, by, rewrite) in cases {
        let ev: Evaluation = evaluate(rs, &pkt.0, &routing).expect("evaluates");
        let what = format!("{name}: {:?}\n{ev:#?}", pkt.0);
        assert_eq!(ev.fate, fate, "fate of {what}");
        let decided = ev
            .decided_by
            .as_ref()
            .map(|r| (r.chain.as_str(), r.text.as_str()));
        assert_eq!(decided, by, "deciding rule of {what}");
        let rewritten = ev
            .rewrite
            .as_ref()
            .map(|r| match r.dport {
                Some(port) => format!("{}:{port}", r.dst),
                None => r.dst.to_string(),
            })
            .unwrap_or_default();
        assert_eq!(rewritten, rewrite, "rewrite of {what}");
        // A packet that passes was let through by every filter chain it met.
        if ev.fate.passes() {
            for step in ev.steps.iter().filter(|s| {
                rs.chain(&s.chain)
                    .is_some_and(|c| c.kind == crate::plan::ChainKind::Filter)
            }) {
                let by_rule = ev.accepted_by.iter().any(|r| r.chain == step.chain);
                assert!(
                    by_rule == matches!(step.end, ChainEnd::Rule(_)),
                    "accepted_by and the steps disagree: {what}"
                );
            }
        }
        for step in &ev.steps {
            if let ChainEnd::Rule(i) = step.end {
                reached.insert((step.chain.clone(), i));
            }
        }
        for r in &ev.logged {
            reached.insert((r.chain.clone(), r.index));
        }
    }
    reached
}

/// Fails unless every rule of `rs` is in `reached`.
fn all_reached(name: &str, rs: &Ruleset, reached: &BTreeSet<(String, usize)>) {
    for chain in &rs.chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            assert!(
                reached.contains(&(chain.name.clone(), i)),
                "{name}: no packet reaches rule {} of chain {}: {}",
                i + 1,
                chain.name,
                crate::render::rule_text(rule)
            );
        }
    }
}

fn check_all(name: &str, rs: &Ruleset, cases: Vec<Case>) {
    let reached = check(name, rs, routes, cases);
    all_reached(name, rs, &reached);
}

/// A default-profile policy.
fn policy(lan: LanMode, mode: Mode, forward: bool, debug: bool) -> Policy {
    let b = Policy::builder()
        .lan(lan)
        .mode(mode)
        .forward(forward)
        .debug(debug);
    match mode {
        Mode::Connect => b.gateway(ip("198.51.100.1")).gateway(ip("2001:db8:2::1")),
        Mode::Block => b,
    }
    .build()
    .expect("policy")
}

fn compat_policy(debug: bool) -> Policy {
    Policy::builder()
        .gateway(ip("198.51.100.1"))
        .gateway(ip("2001:db8:2::1"))
        .profile(Profile::Compat)
        .debug(debug)
        .build()
        .expect("policy")
}

const GW4: &str = "ip daddr @gateways4 accept";
const GW6: &str = "ip6 daddr @gateways6 accept";
const LO: &str = "oifname \"lo\" accept";
const TUN: &str = "oifname \"tun*\" accept";
const CT_UDP: &str = "ct status dnat ip daddr 10.42.0.1 udp dport 53 accept";
const CT_TCP: &str = "ct status dnat ip daddr 10.42.0.1 tcp dport 53 accept";
const DNS_UDP: &str = "udp dport 53 counter reject";
const DNS_TCP: &str = "tcp dport 53 counter reject";
const GUARD_UDP: &str = "udp dport 53 counter drop";
const GUARD_TCP: &str = "tcp dport 53 counter drop";
const REJECT_TCP: &str = "meta l4proto tcp counter reject with tcp reset";
const REJECT: &str = "counter reject";
const FWD_GW4: &str = "ip daddr @gateways4 counter reject";
const FWD_GW6: &str = "ip6 daddr @gateways6 counter reject";
const REPLY: &str = "iifname \"tun*\" ct direction reply accept";
const RESOLVER: &str = "10.42.0.1:53";

/// What the end of a chain (`output` or `forward`) does with a packet nothing opened.
fn refused(pkt: P, chain: fn(&'static str) -> By) -> Case {
    match pkt.0.transport {
        Transport::Tcp { .. } => (pkt, RESET, chain(REJECT_TCP), ""),
        _ => (pkt, REJECTED, chain(REJECT), ""),
    }
}

/// This host's own packets under a default-profile plan of `mode`.
fn local_cases(mode: Mode) -> Vec<Case> {
    let connect = mode == Mode::Connect;
    let mut v: Vec<Case> = vec![
        // Loopback and local stubs: delivered, never rewritten (nat: oifname "lo" return),
        // let out by dns_guard's loopback rule too.
        (udp("127.0.0.53", 53), Fate::Delivered, out(LO), ""),
        (tcp("127.0.0.53", 53), Fate::Delivered, out(LO), ""),
        (udp("192.168.1.2", 9), Fate::Delivered, out(LO), ""),
        (
            udp("192.168.1.2", 53).via("eth0"),
            Fate::Delivered,
            out(LO),
            "",
        ),
        // The tunnel.
        (tcp("203.0.113.10", 443), sent("tun0"), out(TUN), ""),
        (icmp("10.42.0.1", 8), sent("tun0"), out(TUN), ""),
        (
            udp("203.0.113.10", 9).via("tun0"),
            sent("tun0"),
            out(TUN),
            "",
        ),
        // DNS to a public resolver: routed into the tunnel, rewritten to the resolver, still
        // in the tunnel, masqueraded.
        (udp("198.51.100.53", 53), sent("tun0"), out(TUN), RESOLVER),
        (tcp("198.51.100.53", 53), sent("tun0"), out(TUN), RESOLVER),
        // DNS to the LAN router: routed to eth0, rewritten, routed again into the tunnel.
        // The output chain still sees eth0 and lets the rewritten query on; dns_guard sees
        // the tunnel.
        (udp("192.168.1.1", 53), sent("tun0"), out(CT_UDP), RESOLVER),
        (tcp("192.168.1.1", 53), sent("tun0"), out(CT_TCP), RESOLVER),
        // ... unless the socket is bound to a physical device: the rewritten query would
        // leave by it in clear, and dns_guard drops it.
        (
            udp("203.0.113.10", 53).via("eth1"),
            Fate::Dropped,
            guard(GUARD_UDP),
            RESOLVER,
        ),
        (
            tcp("192.168.1.1", 53).via("eth0"),
            Fate::Dropped,
            guard(GUARD_TCP),
            RESOLVER,
        ),
        // IPv6 DNS is not rewritten: refused in output.
        (udp("fd00:1::1", 53), REJECTED, out(DNS_UDP), ""),
        (tcp("2001:db8:1::10", 53), REJECTED, out(DNS_TCP), ""),
        // DHCP, DHCPv6, neighbour discovery, link-local ICMPv6.
        (
            udp("255.255.255.255", 67).sport(68).via("eth0"),
            sent("eth0"),
            out("udp sport 68 udp dport 67 accept"),
            "",
        ),
        (
            udp("ff02::1:2", 547).sport(546).via("eth0"),
            sent("eth0"),
            out("ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept"),
            "",
        ),
        (
            icmp("ff02::2", 133).hops(255).via("eth0"),
            sent("eth0"),
            out("ip6 hoplimit 255 icmpv6 type nd-router-solicit accept"),
            "",
        ),
        (
            icmp("2001:db8:1::10", 135).hops(255),
            sent("eth0"),
            out("ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept"),
            "",
        ),
        (
            icmp("fe80::1", 136).hops(255).via("eth0"),
            sent("eth0"),
            out("ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept"),
            "",
        ),
        (
            icmp("fe80::1", 128).via("eth1"),
            sent("eth1"),
            out("ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept"),
            "",
        ),
        (
            icmp("ff02::1", 128).via("eth0"),
            sent("eth0"),
            out("ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept"),
            "",
        ),
        // Neighbour discovery with a hop limit of 64 is not neighbour discovery.
        (icmp("2001:db8:1::10", 135), REJECTED, out(REJECT), ""),
        // SSDP and mDNS (multicast is routed by eth0 here).
        (
            udp("239.255.255.250", 1900),
            sent("eth0"),
            out("ip daddr 239.255.255.250 udp dport 1900 accept"),
            "",
        ),
        (
            udp("224.0.0.251", 5353).via("eth1"),
            sent("eth1"),
            out("ip daddr 224.0.0.251 udp dport 5353 accept"),
            "",
        ),
        (
            udp("ff05::c", 1900).via("eth0"),
            sent("eth0"),
            out("ip6 daddr ff05::c udp dport 1900 accept"),
            "",
        ),
        (
            udp("ff02::fb", 5353).via("eth0"),
            sent("eth0"),
            out("ip6 daddr ff02::fb udp dport 5353 accept"),
            "",
        ),
        (
            udp("239.255.255.250", 1900).via("tun0"),
            sent("tun0"),
            out(TUN),
            "",
        ),
        (udp("239.1.2.3", 9).via("eth0"), REJECTED, out(REJECT), ""),
        // Everything else: TCP reset, ICMP for the rest, every family, every device.
        (tcp("2001:db8:1::10", 443), RESET, out(REJECT_TCP), ""),
        (udp("2001:db8:1::10", 9), REJECTED, out(REJECT), ""),
        (icmp("2001:db8:1::10", 128), REJECTED, out(REJECT), ""),
        (
            tcp("203.0.113.10", 443).via("eth0"),
            RESET,
            out(REJECT_TCP),
            "",
        ),
        (
            P(Packet::local(ip("203.0.113.10"), Transport::Other(47))).via("eth1"),
            REJECTED,
            out(REJECT),
            "",
        ),
        (udp("10.9.9.9", 9).via("eth1"), REJECTED, out(REJECT), ""),
        // The tunnel's peer through a bound physical device is not the tunnel.
        (udp("10.42.0.1", 9).via("eth0"), REJECTED, out(REJECT), ""),
    ];
    if connect {
        v.extend([
            // Gateways, also for DNS (nat: ip daddr @gateways4 return); dns_guard lets them
            // out too.
            (udp("198.51.100.1", 1194), sent("eth0"), out(GW4), ""),
            (udp("198.51.100.1", 53), sent("eth0"), out(GW4), ""),
            (tcp("198.51.100.1", 53), sent("eth0"), out(GW4), ""),
            (tcp("2001:db8:2::1", 443), sent("eth0"), out(GW6), ""),
            (udp("2001:db8:2::1", 53), sent("eth0"), out(GW6), ""),
        ]);
    } else {
        v.extend([
            // No gateway is open: the VPN's server is refused like any other host, and DNS
            // to it is rewritten like any other query.
            refused(udp("198.51.100.1", 1194), out),
            refused(tcp("2001:db8:2::1", 443), out),
            (udp("198.51.100.1", 53), sent("tun0"), out(CT_UDP), RESOLVER),
            (udp("2001:db8:2::1", 53), REJECTED, out(DNS_UDP), ""),
        ]);
    }
    v
}

/// Forwarded packets (the container behind ctr0, replies from the tunnel) under a
/// default-profile plan with the forwarding chains.
fn forwarded_cases(mode: Mode) -> Vec<Case> {
    let connect = mode == Mode::Connect;
    let mut v: Vec<Case> = vec![
        // Out through the tunnel.
        (udp("203.0.113.10", 9).ctr(), sent("tun0"), fwd(TUN), ""),
        (tcp("192.0.2.1", 443).ctr(), sent("tun0"), fwd(TUN), ""),
        // DNS: rewritten to the resolver at prerouting, routed into the tunnel, masqueraded.
        (
            udp("192.168.1.1", 53).ctr(),
            sent("tun0"),
            fwd(TUN),
            RESOLVER,
        ),
        (
            tcp("203.0.113.10", 53).ctr(),
            sent("tun0"),
            fwd(TUN),
            RESOLVER,
        ),
        // A query to the resolver itself: the rewrite changes nothing.
        (udp("10.42.0.1", 53).ctr(), sent("tun0"), fwd(TUN), RESOLVER),
        // To an address of this host (fib daddr type local): delivered, not rewritten.
        (udp("172.17.0.1", 53).ctr(), Fate::Delivered, NONE, ""),
        (tcp("192.168.1.2", 53).ctr(), Fate::Delivered, NONE, ""),
        // IPv6 DNS is not rewritten; out of the tunnel it is refused.
        (udp("fd00:1::1", 53).ctr(), REJECTED, fwd(DNS_UDP), ""),
        (tcp("2001:db8:1::10", 53).ctr(), REJECTED, fwd(DNS_TCP), ""),
        // The link's own protocols: unicast DHCP is routed like the rest.
        (
            udp("192.168.1.1", 67).sport(68).ctr(),
            sent("eth0"),
            fwd("udp sport 68 udp dport 67 accept"),
            "",
        ),
        // Multicast and link-local destinations are not routed on.
        (udp("ff02::1:2", 547).sport(546).ctr(), NO_ROUTE, NONE, ""),
        (udp("239.255.255.250", 1900).ctr(), NO_ROUTE, NONE, ""),
        (icmp("fe80::1", 128).ctr(), NO_ROUTE, NONE, ""),
        // Between guests on one bridge (br_netfilter): no hop taken, link-local and
        // multicast pass the forward hook as they are.
        (
            udp("ff02::1:2", 547)
                .sport(546)
                .bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept"),
            "",
        ),
        (
            icmp("ff02::2", 133).hops(255).bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 hoplimit 255 icmpv6 type nd-router-solicit accept"),
            "",
        ),
        (
            icmp("fd00:17::3", 135)
                .hops(255)
                .bridged("ctr0", "fd00:17::2"),
            sent("ctr0"),
            fwd("ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept"),
            "",
        ),
        (
            icmp("fe80::17:3", 136)
                .hops(255)
                .bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept"),
            "",
        ),
        (
            icmp("fe80::17:3", 128).bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept"),
            "",
        ),
        (
            icmp("ff02::16", 143).hops(1).bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept"),
            "",
        ),
        (
            udp("239.255.255.250", 1900).bridged("ctr0", "172.17.0.2"),
            sent("ctr0"),
            fwd("ip daddr 239.255.255.250 udp dport 1900 accept"),
            "",
        ),
        (
            udp("224.0.0.251", 5353).bridged("ctr0", "172.17.0.2"),
            sent("ctr0"),
            fwd("ip daddr 224.0.0.251 udp dport 5353 accept"),
            "",
        ),
        (
            udp("ff05::c", 1900).bridged("ctr0", "fd00:17::2"),
            sent("ctr0"),
            fwd("ip6 daddr ff05::c udp dport 1900 accept"),
            "",
        ),
        (
            udp("ff02::fb", 5353).bridged("ctr0", "fe80::17:2"),
            sent("ctr0"),
            fwd("ip6 daddr ff02::fb udp dport 5353 accept"),
            "",
        ),
        refused(udp("ff02::fb", 9).bridged("ctr0", "fe80::17:2"), fwd),
        // A bridged DNS query is rewritten at prerouting, and then routed.
        (
            udp("172.17.0.3", 53).bridged("ctr0", "172.17.0.2"),
            sent("tun0"),
            fwd(TUN),
            RESOLVER,
        ),
        // Everything else out of the tunnel.
        refused(tcp("2001:db8:1::10", 443).ctr(), fwd),
        refused(udp("2001:db8:1::10", 9).ctr(), fwd),
        refused(icmp("2001:db8:1::10", 128).ctr(), fwd),
        // Replies of the container's connections through the tunnel, whatever --lan says.
        (
            udp("172.17.0.2", 40000)
                .from("tun0", "203.0.113.10")
                .reply(),
            sent("ctr0"),
            fwd(REPLY),
            "",
        ),
        (
            tcp("192.168.1.1", 22).from("tun0", "10.42.0.1").reply(),
            sent("eth0"),
            fwd(REPLY),
            "",
        ),
        // No route: not sent.
        (udp("2001:db8:dead::1", 9).ctr(), NO_ROUTE, NONE, ""),
        // Forwarding takes a hop: neighbour discovery (hop limit 255) is never forwarded as
        // such, and a packet with no hop left is not forwarded at all.
        refused(icmp("2001:db8:1::10", 135).hops(255).ctr(), fwd),
        (
            udp("203.0.113.10", 9).hops(1).ctr(),
            Fate::Expired,
            NONE,
            "",
        ),
        // A packet that comes in by lo with its NAT not yet settled is left alone. The kernel
        // never walks one: what comes back in by lo had its NAT settled at output. Only the
        // model can be asked about it (the nat_prerouting rule is a safeguard).
        (
            udp("203.0.113.10", 53).from("lo", "192.168.1.2"),
            sent("tun0"),
            fwd(TUN),
            "",
        ),
    ];
    if connect {
        v.extend([
            // No clear path to the VPN server for guests (nat: @gateways4 return).
            (udp("198.51.100.1", 53).ctr(), REJECTED, fwd(FWD_GW4), ""),
            (tcp("198.51.100.1", 1194).ctr(), REJECTED, fwd(FWD_GW4), ""),
            (tcp("2001:db8:2::1", 443).ctr(), REJECTED, fwd(FWD_GW6), ""),
        ]);
    } else {
        v.extend([
            (
                udp("198.51.100.1", 53).ctr(),
                sent("tun0"),
                fwd(TUN),
                RESOLVER,
            ),
            refused(tcp("198.51.100.1", 1194).ctr(), fwd),
        ]);
    }
    v
}

/// Forwarded packets when forwarding is not covered (`--forward off`): no forward chain, no
/// rewrite; only dns_guard, at postrouting, still sees them.
fn unfiltered_forwarded_cases(mode: Mode) -> Vec<Case> {
    let mut v = vec![
        (udp("203.0.113.10", 9).ctr(), sent("tun0"), guard(TUN), ""),
        (tcp("2001:db8:1::10", 443).ctr(), sent("eth0"), NONE, ""),
        (udp("192.168.1.1", 9).ctr(), sent("eth0"), NONE, ""),
        (udp("10.42.0.1", 53).ctr(), sent("tun0"), guard(TUN), ""),
        // Not rewritten, and port 53 still may not leave in clear.
        (
            udp("192.168.1.1", 53).ctr(),
            Fate::Dropped,
            guard(GUARD_UDP),
            "",
        ),
        (
            tcp("2001:db8:1::10", 53).ctr(),
            Fate::Dropped,
            guard(GUARD_TCP),
            "",
        ),
        (udp("172.17.0.1", 53).ctr(), Fate::Delivered, NONE, ""),
        (
            udp("172.17.0.2", 40000)
                .from("tun0", "203.0.113.10")
                .reply(),
            sent("ctr0"),
            NONE,
            "",
        ),
    ];
    if mode == Mode::Connect {
        v.push((udp("198.51.100.1", 53).ctr(), sent("eth0"), guard(GW4), ""));
        v.push((udp("2001:db8:2::1", 53).ctr(), sent("eth0"), guard(GW6), ""));
    }
    v
}

/// The LAN rules of each mode for this host's packets (`chain` output) or the container's
/// (`chain` forward).
fn lan_cases(lan: LanMode, forwarded: bool) -> Vec<Case> {
    let chain: fn(&'static str) -> By = if forwarded { fwd } else { out };
    let from = |pkt: P| if forwarded { pkt.ctr() } else { pkt };
    let decide = |pkt: P, oif: &str, rule: &'static str| -> Case {
        match lan {
            LanMode::Off => refused(pkt, chain),
            LanMode::Private | LanMode::OnLink => (pkt, sent(oif), chain(rule), ""),
        }
    };
    let open = |pkt: P, oif: &str, rule: &'static str| decide(from(pkt), oif, rule);
    let mut v = vec![
        open(
            udp("192.168.1.1", 9),
            "eth0",
            "oifname \"eth0\" ip daddr 192.168.1.0/24 accept",
        ),
        open(
            tcp("fd00:1::1", 631),
            "eth0",
            "oifname \"eth0\" ip6 daddr fd00:1::/64 accept",
        ),
        if forwarded {
            // Link-local is bridged, never routed (eth0 as a bridge of VMs).
            decide(
                udp("fe80::1", 9).bridged("eth0", "fe80::3"),
                "eth0",
                "oifname \"eth0\" ip6 daddr fe80::/64 accept",
            )
        } else {
            open(
                udp("fe80::1", 9),
                "eth0",
                "oifname \"eth0\" ip6 daddr fe80::/64 accept",
            )
        },
        open(
            tcp("192.168.2.1", 631),
            "eth1",
            "oifname \"eth1\" ip daddr 192.168.2.0/24 accept",
        ),
        open(
            udp("fd00:2::1", 9),
            "eth1",
            "oifname \"eth1\" ip6 daddr fd00:2::/64 accept",
        ),
        open(
            udp("172.17.0.3", 9),
            "ctr0",
            "oifname \"ctr0\" ip daddr 172.17.0.0/16 accept",
        ),
    ];
    // A public on-link prefix only with on-link.
    v.push(match lan {
        LanMode::OnLink => (
            from(udp("100.64.5.1", 9)),
            sent("pub0"),
            chain("oifname \"pub0\" ip daddr 100.64.5.0/24 accept"),
            "",
        ),
        LanMode::Private | LanMode::Off => refused(from(udp("100.64.5.1", 9)), chain),
    });
    if !forwarded {
        // A LAN prefix is open only on its own interface.
        v.push(refused(udp("192.168.1.1", 9).via("eth1"), out));
    } else {
        // What starts on the tunnel's side is not a reply: it goes by --lan like the rest
        // (nat: iifname "tun*" return).
        v.push(decide(
            udp("172.17.0.2", 9).from("tun0", "203.0.113.10"),
            "ctr0",
            "oifname \"ctr0\" ip daddr 172.17.0.0/16 accept",
        ));
        // A DNS server in a container is not reachable from outside, in any mode.
        v.push((
            udp("172.17.0.2", 53).from("tun0", "203.0.113.10"),
            REJECTED,
            fwd(DNS_UDP),
            "",
        ));
    }
    v
}

#[test]
fn every_rule_of_every_default_profile_plan() {
    for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
        for mode in [Mode::Connect, Mode::Block] {
            for forward in [true, false] {
                for debug in [false, true] {
                    let name = format!("lan {lan}, {mode:?}, forward {forward}, debug {debug}");
                    let rs = plan(&policy(lan, mode, forward, debug), &network()).expect("plan");
                    assert_eq!(
                        rs.chain("forward").is_some(),
                        forward,
                        "{name}: forward chain"
                    );
                    let mut cases = local_cases(mode);
                    cases.extend(lan_cases(lan, false));
                    if forward {
                        cases.extend(forwarded_cases(mode));
                        cases.extend(lan_cases(lan, true));
                    } else {
                        cases.extend(unfiltered_forwarded_cases(mode));
                    }
                    check_all(&name, &rs, cases);
                }
            }
        }
    }
}

#[test]
fn with_the_tunnel_down_dns_is_dropped_and_nothing_leaves() {
    for mode in [Mode::Connect, Mode::Block] {
        for forward in [true, false] {
            let name = format!("tunnel down, {mode:?}, forward {forward}");
            let rs =
                plan(&policy(LanMode::Private, mode, forward, false), &network()).expect("plan");
            let mut cases: Vec<Case> = vec![
                // The resolver is routed by eth0 now: rewritten queries are let on by output
                // (which sees the device of the first route) and dropped by dns_guard.
                (
                    udp("198.51.100.53", 53),
                    Fate::Dropped,
                    guard(GUARD_UDP),
                    RESOLVER,
                ),
                (
                    tcp("192.168.1.1", 53),
                    Fate::Dropped,
                    guard(GUARD_TCP),
                    RESOLVER,
                ),
                // A query to the resolver itself is not rewritten (ct status dnat does not
                // hold): refused in output.
                (udp("10.42.0.1", 53), REJECTED, out(DNS_UDP), RESOLVER),
                refused(tcp("203.0.113.10", 443), out),
                refused(udp("10.42.0.1", 9), out),
                (udp("127.0.0.53", 53), Fate::Delivered, out(LO), ""),
            ];
            if forward {
                cases.extend([
                    (
                        udp("192.168.1.1", 53).ctr(),
                        REJECTED,
                        fwd(DNS_UDP),
                        RESOLVER,
                    ),
                    (
                        tcp("203.0.113.10", 53).ctr(),
                        REJECTED,
                        fwd(DNS_TCP),
                        RESOLVER,
                    ),
                    refused(tcp("203.0.113.10", 443).ctr(), fwd),
                ]);
            } else {
                cases.extend([
                    (
                        udp("192.168.1.1", 53).ctr(),
                        Fate::Dropped,
                        guard(GUARD_UDP),
                        "",
                    ),
                    (tcp("203.0.113.10", 443).ctr(), sent("eth0"), NONE, ""),
                ]);
            }
            check(&name, &rs, routes_tunnel_down, cases);
        }
    }
}

#[test]
fn every_rule_of_the_compat_plan() {
    const ETH0_V4_REJECT: &str = "oifname \"eth0\" meta nfproto ipv4 counter reject";
    const V6_TCP: &str = "meta nfproto ipv6 meta l4proto tcp counter reject";
    const V6_UDP: &str = "meta nfproto ipv6 meta l4proto udp counter reject";
    for debug in [false, true] {
        let rs = plan(&compat_policy(debug), &network()).expect("plan");
        assert!(rs.chain("forward").is_none() && rs.chain(CHAIN_DNS_GUARD).is_none());
        let cases: Vec<Case> = vec![
            // Bound to eth0: the LAN, the LAN-source DNS accepts, gateways, then reject.
            (
                udp("192.168.1.1", 9),
                sent("eth0"),
                out("oifname \"eth0\" ip daddr 192.168.1.0/24 accept"),
                "",
            ),
            // The leak the original has: a query to the LAN router is rewritten to the
            // resolver, judged by eth0 and the LAN source, and masqueraded into the tunnel.
            (
                udp("192.168.1.1", 53),
                sent("tun0"),
                out("oifname \"eth0\" ip saddr 192.168.1.0/24 udp dport 53 accept"),
                RESOLVER,
            ),
            (
                tcp("192.168.1.1", 53),
                sent("tun0"),
                out("oifname \"eth0\" ip saddr 192.168.1.0/24 tcp dport 53 accept"),
                RESOLVER,
            ),
            (
                udp("239.255.255.250", 1900).via("eth0"),
                sent("eth0"),
                out("oifname \"eth0\" ip daddr 239.255.255.250 udp dport 1900 return"),
                "",
            ),
            (
                udp("224.0.0.251", 5353).via("eth0"),
                sent("eth0"),
                out("oifname \"eth0\" ip daddr 224.0.0.251 udp dport 5353 return"),
                "",
            ),
            (
                tcp("198.51.100.1", 443),
                sent("eth0"),
                out("oifname \"eth0\" ip daddr 198.51.100.1 accept"),
                "",
            ),
            // DNS to a gateway is not rewritten (nat: ip daddr 198.51.100.1 return).
            (
                udp("198.51.100.1", 53),
                sent("eth0"),
                out("oifname \"eth0\" ip saddr 192.168.1.0/24 udp dport 53 accept"),
                "",
            ),
            (
                tcp("203.0.113.10", 443).via("eth0"),
                REJECTED,
                out(ETH0_V4_REJECT),
                "",
            ),
            // The original's leaks: a second uplink, and every ICMPv6.
            (udp("10.9.9.9", 9).via("eth1"), sent("eth1"), NONE, ""),
            (icmp("2001:db8:1::10", 128), sent("eth0"), NONE, ""),
            (
                udp("fd00:1::1", 9),
                sent("eth0"),
                out("oifname \"eth0\" ip6 daddr fd00:1::/64 accept"),
                "",
            ),
            (
                udp("ff05::c", 1900).via("eth0"),
                sent("eth0"),
                out("oifname \"eth0\" ip6 daddr ff05::c udp dport 1900 return"),
                "",
            ),
            (
                udp("ff02::fb", 5353).via("eth0"),
                sent("eth0"),
                out("oifname \"eth0\" ip6 daddr ff02::fb udp dport 5353 return"),
                "",
            ),
            (tcp("2001:db8:1::10", 443), REJECTED, out(V6_TCP), ""),
            (
                udp("2001:db8:1::10", 9).via("eth1"),
                REJECTED,
                out(V6_UDP),
                "",
            ),
            // Local stubs keep udp (nat accept); tcp to a stub is rewritten (a known leak of
            // the original: the query leaves for the resolver).
            (udp("127.0.0.53", 53), Fate::Delivered, NONE, ""),
            (udp("127.0.1.1", 53), Fate::Delivered, NONE, ""),
            (udp("127.0.0.1", 53), Fate::Delivered, NONE, ""),
            (tcp("127.0.0.53", 53), sent("tun0"), NONE, RESOLVER),
            (udp("198.51.100.53", 53), sent("tun0"), NONE, RESOLVER),
            // Forwarded traffic is not filtered at all, its DNS not rewritten: it leaves in
            // clear (only DNS to the resolver is masqueraded).
            (udp("192.168.1.1", 53).ctr(), sent("eth0"), NONE, ""),
            (tcp("2001:db8:1::10", 443).ctr(), sent("eth0"), NONE, ""),
            (udp("198.51.100.1", 53).ctr(), sent("eth0"), NONE, ""),
            (udp("10.42.0.1", 53).ctr(), sent("tun0"), NONE, ""),
        ];
        check_all(&format!("compat, debug {debug}"), &rs, cases);
    }
}

#[test]
fn output_chains_see_the_interface_chosen_before_the_rewrite() {
    let rs = plan(
        &policy(LanMode::Private, Mode::Connect, true, false),
        &network(),
    )
    .expect("plan");
    let ev = evaluate(&rs, &udp("192.168.1.1", 53).0, &routes).expect("evaluates");
    assert_eq!(ev.route.as_ref().map(|r| r.oif.as_str()), Some("eth0"));
    assert_eq!(ev.rerouted.as_ref().map(|r| r.oif.as_str()), Some("tun0"));
    let seen = |chain: &str| {
        ev.steps
            .iter()
            .find(|s| s.chain == chain)
            .and_then(|s| s.oif.clone())
    };
    assert_eq!(seen("output").as_deref(), Some("eth0"));
    // Postrouting sees the device it really leaves by.
    assert_eq!(seen(CHAIN_DNS_GUARD).as_deref(), Some("tun0"));
    assert_eq!(seen("nat_postrouting").as_deref(), Some("tun0"));
    // NAT before filter at output (-100 before 0); filter before srcnat at postrouting.
    let order: Vec<&str> = ev.steps.iter().map(|s| s.chain.as_str()).collect();
    assert_eq!(
        order,
        ["nat_output", "output", CHAIN_DNS_GUARD, "nat_postrouting"]
    );
    // Both filter chains let it through: output hands the rewritten query on, dns_guard
    // lets it into the tunnel.
    let accepted: Vec<(&str, &str)> = ev
        .accepted_by
        .iter()
        .map(|r| (r.chain.as_str(), r.text.as_str()))
        .collect();
    assert_eq!(accepted, [("output", CT_UDP), (CHAIN_DNS_GUARD, TUN)]);
    assert_eq!(ev.masquerade.as_ref().map(|m| m.oif.as_str()), Some("tun0"));

    // A forwarded query: rewritten at prerouting, then routed, then judged by the device it
    // really leaves by.
    let ev = evaluate(&rs, &udp("192.168.1.1", 53).ctr().0, &routes).expect("evaluates");
    let order: Vec<(&str, Option<&str>, Option<&str>)> = ev
        .steps
        .iter()
        .map(|s| (s.chain.as_str(), s.iif.as_deref(), s.oif.as_deref()))
        .collect();
    assert_eq!(
        order,
        [
            ("nat_prerouting", Some("ctr0"), None),
            ("forward", Some("ctr0"), Some("tun0")),
            (CHAIN_DNS_GUARD, Some("ctr0"), Some("tun0")),
            ("nat_postrouting", Some("ctr0"), Some("tun0")),
        ]
    );
    assert_eq!(ev.route.as_ref().map(|r| r.oif.as_str()), Some("tun0"));
    assert_eq!(ev.rerouted.as_ref().map(|r| r.oif.as_str()), Some("tun0"));

    // A reply meets no NAT chain.
    let ev = evaluate(
        &rs,
        &udp("172.17.0.2", 40000)
            .sport(53)
            .from("tun0", "10.42.0.1")
            .reply()
            .0,
        &routes,
    )
    .expect("evaluates");
    assert!(ev.rewrite.is_none() && ev.masquerade.is_none());
    assert!(ev
        .steps
        .iter()
        .filter(|s| s.chain.starts_with("nat_"))
        .all(|s| s.end == ChainEnd::Skipped));
    assert_eq!(ev.fate, sent("ctr0"));
}

#[test]
fn fib_daddr_type_local_asks_the_routing_table() {
    let rs = plan(
        &policy(LanMode::Private, Mode::Connect, true, false),
        &network(),
    )
    .expect("plan");
    for (dst, local) in [
        ("172.17.0.1", true),
        ("192.168.2.2", true),
        ("10.42.0.2", true),
        ("192.168.1.1", false),
        ("203.0.113.10", false),
    ] {
        let ev = evaluate(&rs, &udp(dst, 53).ctr().0, &routes).expect("evaluates");
        let pre = ev
            .steps
            .iter()
            .find(|s| s.chain == "nat_prerouting")
            .expect("prerouting");
        assert_eq!(pre.end == ChainEnd::Rule(2), local, "{dst}: {ev:#?}");
        assert_eq!(ev.rewrite.is_none(), local, "{dst}");
        assert_eq!(ev.fate == Fate::Delivered, local, "{dst}");
    }
}

#[test]
fn nat_is_settled_by_the_first_nat_rule_and_skipped_on_the_way_back_in() {
    use crate::plan::{Action, Chain, ChainKind, Hook, Match, Rule, L4};
    let resolver = std::net::Ipv4Addr::new(10, 42, 0, 1);
    let other = std::net::Ipv4Addr::new(10, 41, 0, 1);
    let nat = |name: &str, prio: i32, to| Chain {
        name: name.into(),
        hook: Hook::Output,
        kind: ChainKind::Nat,
        priority: prio,
        rules: vec![Rule::new([Match::Dport(L4::Udp, 53)], Action::Dnat(to, 53))],
    };
    // Declared in the wrong order: priorities decide.
    let rs = Ruleset {
        table: "t".into(),
        record: String::new(),
        sets: vec![],
        chains: vec![nat("second", -50, other), nat("first", -150, resolver)],
        set_ip_forward: false,
    };
    let ev = evaluate(&rs, &udp("198.51.100.53", 53).0, &routes).expect("evaluates");
    assert_eq!(ev.rewrite.map(|r| r.dst), Some(IpAddr::V4(resolver)));
    assert_eq!(ev.steps[1].end, ChainEnd::Skipped);
    // A DNAT to IPv4 leaves an IPv6 packet alone.
    let ev = evaluate(&rs, &udp("2001:db8:1::10", 53).0, &routes).expect("evaluates");
    assert!(ev.rewrite.is_none());
    // To this host: back in through lo, where NAT is settled.
    let ev = evaluate(&rs, &udp("127.0.0.53", 9).0, &routes).expect("evaluates");
    assert_eq!(ev.fate, Fate::Delivered);
}

#[test]
fn every_plan_decodes_back_to_itself() {
    let mut policies = vec![compat_policy(false), compat_policy(true)];
    for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
        for mode in [Mode::Connect, Mode::Block] {
            for forward in [true, false] {
                for debug in [false, true] {
                    policies.push(policy(lan, mode, forward, debug));
                }
            }
        }
    }
    for p in policies {
        let rs = plan(&p, &network()).expect("plan");
        let back = crate::nft::decode::round_trip(&rs);
        assert_eq!(back, rs, "{}", crate::plan::record(&p));
    }
}
