//! The evaluator on every rule of every profile: for each plan, packets that each rule decides
//! (or rewrites), with the fate and the rule the kernel would pick, on a fixed host: `eth0`
//! (192.168.1.2/24, fd00:1::2/64, fe80::2/64), `eth1` (192.168.2.2/24, fd00:2::2/64), `tun0`
//! (10.42.0.2/24, `0.0.0.0/1` and `128.0.0.0/1` routed into it as OpenVPN does), a container
//! bridge `ctr0` (172.17.0.1/16), a public on-link `pub0` (100.64.5.2/24), gateways 198.51.100.1 and 2001:db8:2::1 routed by `eth0`.
//! Every rule of every plan must be reached by at least one packet.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::discovery::{Interface, Network, Prefix};
use crate::nft::eval::{
    evaluate, ChainEnd, Evaluation, Fate, Origin, Packet, Route, RouteQuery, Transport,
};
use crate::plan::{plan, Ruleset};
use crate::policy::{LanMode, Policy, Profile};

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

/// The host's routing table, as the kernel would answer.
fn routes(q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
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
    if dst == ip("2001:db8:dead::1") {
        return Ok(None); // unreachable
    }
    let inside = |a: &str, len: u8| {
        let net = p(a, len);
        net.addr().is_ipv4() == dst.is_ipv4() && net.contains(&Prefix::new(dst, net.max_len()))
    };
    let table: [(&str, u8, &str); 11] = [
        ("192.168.1.0", 24, "eth0"),
        ("192.168.2.0", 24, "eth1"),
        ("10.42.0.0", 24, "tun0"),
        ("172.17.0.0", 16, "ctr0"),
        ("100.64.5.0", 24, "pub0"),
        ("198.51.100.1", 32, "eth0"),
        ("0.0.0.0", 1, "tun0"),
        ("128.0.0.0", 1, "tun0"),
        ("fd00:2::", 64, "eth1"),
        ("fe80::", 64, "eth0"),
        ("::", 0, "eth0"),
    ];
    for (net, len, dev) in table {
        if inside(net, len) {
            return out(dev);
        }
    }
    Ok(None)
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
    fn from(mut self, iif: &str, src: &str) -> P {
        self.0.origin = Origin::Forwarded { iif: iif.into() };
        self.0.src = Some(ip(src));
        self
    }
}

fn sent(oif: &str) -> Fate {
    Fate::Sent { oif: oif.into() }
}
const REJECTED: Fate = Fate::Rejected { tcp_reset: false };
const RESET: Fate = Fate::Rejected { tcp_reset: true };

/// One expectation: the packet, its fate, the deciding rule's text (`""`: none), the
/// rewritten destination (`""`: none).
type Case = (P, Fate, &'static str, &'static str);

/// Evaluates every case, checks it, and checks that together they reach every rule.
fn check_all(name: &str, rs: &Ruleset, cases: Vec<Case>) {
    let mut reached = BTreeSet::new();
    for (pkt, fate, rule, rewrite) in cases {
        let ev: Evaluation = evaluate(rs, &pkt.0, &routes).expect("evaluates");
        let what = format!("{name}: {:?}\n{ev:#?}", pkt.0);
        assert_eq!(ev.fate, fate, "fate of {what}");
        let decided = ev
            .decided_by
            .as_ref()
            .map(|r| r.text.as_str())
            .unwrap_or("");
        assert_eq!(decided, rule, "deciding rule of {what}");
        let rewritten = ev
            .rewrite
            .as_ref()
            .map(|r| match r.dport {
                Some(port) => format!("{}:{port}", r.dst),
                None => r.dst.to_string(),
            })
            .unwrap_or_default();
        assert_eq!(rewritten, rewrite, "rewrite of {what}");
        for step in &ev.steps {
            if let ChainEnd::Rule(i) = step.end {
                reached.insert((step.chain.clone(), i));
            }
        }
        for r in &ev.logged {
            reached.insert((r.chain.clone(), r.index));
        }
    }
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

fn policy(lan: LanMode, profile: Profile, debug: bool) -> Policy {
    Policy::builder()
        .gateway(ip("198.51.100.1"))
        .gateway(ip("2001:db8:2::1"))
        .lan(lan)
        .profile(profile)
        .debug(debug)
        .build()
        .expect("policy")
}

const GW4: &str = "ip daddr @gateways4 accept";
const LO: &str = "oifname \"lo\" accept";
const TUN: &str = "oifname \"tun*\" accept";
const DNS_UDP: &str = "udp dport 53 counter reject";
const DNS_TCP: &str = "tcp dport 53 counter reject";
const REJECT_TCP: &str = "meta l4proto tcp counter reject with tcp reset";
const REJECT: &str = "counter reject";

/// What every default-profile plan does, whatever the LAN mode.
fn default_cases() -> Vec<Case> {
    vec![
        // Loopback and local stubs: delivered, never rewritten (nat: oifname "lo" return).
        (udp("127.0.0.53", 53), Fate::Delivered, LO, ""),
        (tcp("127.0.0.53", 53), Fate::Delivered, LO, ""),
        (udp("192.168.1.2", 9), Fate::Delivered, LO, ""),
        (udp("192.168.1.2", 9).via("eth0"), Fate::Delivered, LO, ""),
        // The tunnel.
        (tcp("203.0.113.10", 443), sent("tun0"), TUN, ""),
        (icmp("10.42.0.1", 8), sent("tun0"), TUN, ""),
        (udp("203.0.113.10", 9).via("tun0"), sent("tun0"), TUN, ""),
        // Gateways, also for DNS (nat: ip daddr @gateways4 return).
        (udp("198.51.100.1", 1194), sent("eth0"), GW4, ""),
        (udp("198.51.100.1", 53), sent("eth0"), GW4, ""),
        (
            tcp("2001:db8:2::1", 443),
            sent("eth0"),
            "ip6 daddr @gateways6 accept",
            "",
        ),
        // DNS through the tunnel: rewritten to the resolver, masqueraded.
        (udp("198.51.100.53", 53), sent("tun0"), TUN, "10.42.0.1:53"),
        (tcp("198.51.100.53", 53), sent("tun0"), TUN, "10.42.0.1:53"),
        // DNS that would leave in clear: the output chain judges by the interface chosen
        // before the rewrite, and refuses.
        (udp("192.168.1.1", 53), REJECTED, DNS_UDP, "10.42.0.1:53"),
        (tcp("192.168.1.1", 53), REJECTED, DNS_TCP, "10.42.0.1:53"),
        (
            udp("203.0.113.10", 53).via("eth1"),
            REJECTED,
            DNS_UDP,
            "10.42.0.1:53",
        ),
        (udp("fd00:1::1", 53), REJECTED, DNS_UDP, ""),
        (tcp("2001:db8:1::10", 53), REJECTED, DNS_TCP, ""),
        // DHCP, DHCPv6, neighbour discovery, link-local ICMPv6.
        (
            udp("255.255.255.255", 67).sport(68).via("eth0"),
            sent("eth0"),
            "udp sport 68 udp dport 67 accept",
            "",
        ),
        (
            udp("ff02::1:2", 547).sport(546).via("eth0"),
            sent("eth0"),
            "ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept",
            "",
        ),
        (
            icmp("ff02::2", 133).hops(255).via("eth0"),
            sent("eth0"),
            "ip6 hoplimit 255 icmpv6 type nd-router-solicit accept",
            "",
        ),
        (
            icmp("2001:db8:1::10", 135).hops(255),
            sent("eth0"),
            "ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept",
            "",
        ),
        (
            icmp("fe80::1", 136).hops(255).via("eth0"),
            sent("eth0"),
            "ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept",
            "",
        ),
        (
            icmp("fe80::1", 128).via("eth1"),
            sent("eth1"),
            "ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept",
            "",
        ),
        (
            icmp("ff02::1", 128).via("eth0"),
            sent("eth0"),
            "ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept",
            "",
        ),
        // Neighbour discovery with a hop limit of 64 is not neighbour discovery.
        (icmp("2001:db8:1::10", 135), REJECTED, REJECT, ""),
        // SSDP and mDNS out of the LAN (routed into the tunnel otherwise).
        (
            udp("239.255.255.250", 1900).via("eth0"),
            sent("eth0"),
            "ip daddr 239.255.255.250 udp dport 1900 accept",
            "",
        ),
        (
            udp("224.0.0.251", 5353).via("eth1"),
            sent("eth1"),
            "ip daddr 224.0.0.251 udp dport 5353 accept",
            "",
        ),
        (
            udp("ff05::c", 1900).via("eth0"),
            sent("eth0"),
            "ip6 daddr ff05::c udp dport 1900 accept",
            "",
        ),
        (
            udp("ff02::fb", 5353).via("eth0"),
            sent("eth0"),
            "ip6 daddr ff02::fb udp dport 5353 accept",
            "",
        ),
        (udp("239.255.255.250", 1900), sent("tun0"), TUN, ""),
        (udp("239.1.2.3", 9).via("eth0"), REJECTED, REJECT, ""),
        // Everything else: TCP reset, ICMP for the rest, every family, every device.
        (tcp("2001:db8:1::10", 443), RESET, REJECT_TCP, ""),
        (udp("2001:db8:1::10", 9), REJECTED, REJECT, ""),
        (icmp("2001:db8:1::10", 128), REJECTED, REJECT, ""),
        (tcp("203.0.113.10", 443).via("eth0"), RESET, REJECT_TCP, ""),
        (
            P(Packet::local(ip("203.0.113.10"), Transport::Other(47))).via("eth1"),
            REJECTED,
            REJECT,
            "",
        ),
        (udp("10.9.9.9", 9).via("eth1"), REJECTED, REJECT, ""),
        // The tunnel's peer through a bound physical device is not the tunnel.
        (udp("10.42.0.1", 9).via("eth0"), REJECTED, REJECT, ""),
        // Forwarded traffic is not filtered by this plan, only DNS to the resolver is
        // masqueraded.
        (
            udp("203.0.113.10", 9).from("ctr0", "172.17.0.2"),
            sent("tun0"),
            "",
            "",
        ),
        (
            udp("10.42.0.1", 53).from("ctr0", "172.17.0.2"),
            sent("tun0"),
            "",
            "",
        ),
        (
            tcp("10.42.0.1", 53).from("ctr0", "172.17.0.2"),
            sent("tun0"),
            "",
            "",
        ),
        (
            udp("172.17.0.1", 9).from("ctr0", "172.17.0.2"),
            Fate::Delivered,
            "",
            "",
        ),
        // No route: not sent.
        (
            udp("2001:db8:dead::1", 9).from("ctr0", "fd00:17::2"),
            Fate::NoRoute {
                after_rewrite: false,
            },
            "",
            "",
        ),
    ]
}

/// The LAN rules of each mode: (packet, fate, rule) for the LAN prefixes of the host.
fn lan_cases(lan: LanMode) -> Vec<Case> {
    let open = |pkt: P, oif: &str, rule: &'static str| -> Case {
        match lan {
            LanMode::Off => {
                let (fate, r) = match pkt.0.transport {
                    Transport::Tcp { .. } => (RESET, REJECT_TCP),
                    _ => (REJECTED, REJECT),
                };
                (pkt, fate, r, "")
            }
            LanMode::Private | LanMode::OnLink => (pkt, sent(oif), rule, ""),
        }
    };
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
        open(
            udp("fe80::1", 9).via("eth0"),
            "eth0",
            "oifname \"eth0\" ip6 daddr fe80::/64 accept",
        ),
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
            udp("172.17.0.2", 9),
            "ctr0",
            "oifname \"ctr0\" ip daddr 172.17.0.0/16 accept",
        ),
    ];
    // A LAN prefix is open only on its own interface.
    v.push((udp("192.168.1.1", 9).via("eth1"), REJECTED, REJECT, ""));
    // A public on-link prefix only with on-link.
    v.push(match lan {
        LanMode::OnLink => (
            udp("100.64.5.1", 9),
            sent("pub0"),
            "oifname \"pub0\" ip daddr 100.64.5.0/24 accept",
            "",
        ),
        LanMode::Private | LanMode::Off => (udp("100.64.5.1", 9), REJECTED, REJECT, ""),
    });
    v
}

#[test]
fn every_rule_of_every_default_profile_plan() {
    for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
        for debug in [false, true] {
            let rs = plan(&policy(lan, Profile::Default, debug), &network()).expect("plan");
            let mut cases = default_cases();
            cases.extend(lan_cases(lan));
            check_all(&format!("default, lan {lan}, debug {debug}"), &rs, cases);
        }
    }
}

#[test]
fn every_rule_of_the_compat_plan() {
    const ETH0_V4_REJECT: &str = "oifname \"eth0\" meta nfproto ipv4 counter reject";
    const V6_TCP: &str = "meta nfproto ipv6 meta l4proto tcp counter reject";
    const V6_UDP: &str = "meta nfproto ipv6 meta l4proto udp counter reject";
    for debug in [false, true] {
        let rs = plan(
            &policy(LanMode::Private, Profile::Compat, debug),
            &network(),
        )
        .expect("plan");
        let cases: Vec<Case> = vec![
            // Bound to eth0: the LAN, the LAN-source DNS accepts, gateways, then reject.
            (
                udp("192.168.1.1", 9),
                sent("eth0"),
                "oifname \"eth0\" ip daddr 192.168.1.0/24 accept",
                "",
            ),
            // The leak the original has: a query to the LAN router is rewritten to the
            // resolver, judged by eth0 and the LAN source, and masqueraded into the tunnel.
            (
                udp("192.168.1.1", 53),
                sent("tun0"),
                "oifname \"eth0\" ip saddr 192.168.1.0/24 udp dport 53 accept",
                "10.42.0.1:53",
            ),
            (
                tcp("192.168.1.1", 53),
                sent("tun0"),
                "oifname \"eth0\" ip saddr 192.168.1.0/24 tcp dport 53 accept",
                "10.42.0.1:53",
            ),
            (
                udp("239.255.255.250", 1900).via("eth0"),
                sent("eth0"),
                "oifname \"eth0\" ip daddr 239.255.255.250 udp dport 1900 return",
                "",
            ),
            (
                udp("224.0.0.251", 5353).via("eth0"),
                sent("eth0"),
                "oifname \"eth0\" ip daddr 224.0.0.251 udp dport 5353 return",
                "",
            ),
            (
                tcp("198.51.100.1", 443),
                sent("eth0"),
                "oifname \"eth0\" ip daddr 198.51.100.1 accept",
                "",
            ),
            // DNS to a gateway is not rewritten (nat: ip daddr 198.51.100.1 return).
            (
                udp("198.51.100.1", 53),
                sent("eth0"),
                "oifname \"eth0\" ip saddr 192.168.1.0/24 udp dport 53 accept",
                "",
            ),
            (
                tcp("203.0.113.10", 443).via("eth0"),
                REJECTED,
                ETH0_V4_REJECT,
                "",
            ),
            // The original's leaks: a second uplink, and every ICMPv6.
            (udp("10.9.9.9", 9).via("eth1"), sent("eth1"), "", ""),
            (icmp("2001:db8:1::10", 128), sent("eth0"), "", ""),
            (
                udp("fd00:1::1", 9),
                sent("eth0"),
                "oifname \"eth0\" ip6 daddr fd00:1::/64 accept",
                "",
            ),
            (
                udp("ff05::c", 1900).via("eth0"),
                sent("eth0"),
                "oifname \"eth0\" ip6 daddr ff05::c udp dport 1900 return",
                "",
            ),
            (
                udp("ff02::fb", 5353).via("eth0"),
                sent("eth0"),
                "oifname \"eth0\" ip6 daddr ff02::fb udp dport 5353 return",
                "",
            ),
            (tcp("2001:db8:1::10", 443), REJECTED, V6_TCP, ""),
            (udp("2001:db8:1::10", 9).via("eth1"), REJECTED, V6_UDP, ""),
            // Local stubs keep udp (nat accept); tcp to a stub is rewritten (a known leak of
            // the original: the query leaves for the resolver).
            (udp("127.0.0.53", 53), Fate::Delivered, "", ""),
            (udp("127.0.1.1", 53), Fate::Delivered, "", ""),
            (udp("127.0.0.1", 53), Fate::Delivered, "", ""),
            (tcp("127.0.0.53", 53), sent("tun0"), "", "10.42.0.1:53"),
            (udp("198.51.100.53", 53), sent("tun0"), "", "10.42.0.1:53"),
        ];
        check_all(&format!("compat, debug {debug}"), &rs, cases);
    }
}

#[test]
fn output_chains_see_the_interface_chosen_before_the_rewrite() {
    let rs = plan(
        &policy(LanMode::Private, Profile::Default, false),
        &network(),
    )
    .expect("plan");
    let ev = evaluate(&rs, &udp("192.168.1.1", 53).0, &routes).expect("evaluates");
    assert_eq!(ev.route.as_ref().map(|r| r.oif.as_str()), Some("eth0"));
    assert_eq!(ev.rerouted.as_ref().map(|r| r.oif.as_str()), Some("tun0"));
    let output = ev
        .steps
        .iter()
        .find(|s| s.chain == "output")
        .expect("output chain");
    assert_eq!(output.oif.as_deref(), Some("eth0"));
    // The NAT chain runs before the filter chain (priority -100 before 0).
    let order: Vec<&str> = ev.steps.iter().map(|s| s.chain.as_str()).collect();
    assert_eq!(order, ["nat_output", "output"]);

    // Through the tunnel, postrouting sees the real device and masquerades.
    let ev = evaluate(&rs, &udp("198.51.100.53", 53).0, &routes).expect("evaluates");
    let post = ev
        .steps
        .iter()
        .find(|s| s.chain == "nat_postrouting")
        .expect("postrouting");
    assert_eq!(post.oif.as_deref(), Some("tun0"));
    assert_eq!(ev.masquerade.as_ref().map(|m| m.oif.as_str()), Some("tun0"));
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
    for profile in [Profile::Default, Profile::Compat] {
        for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
            for debug in [false, true] {
                let rs = plan(&policy(lan, profile, debug), &network()).expect("plan");
                let back = crate::nft::decode::round_trip(&rs);
                assert_eq!(back, rs, "{profile:?} {lan} debug {debug}");
            }
        }
    }
}
