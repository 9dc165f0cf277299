//! The DNS rules of the plan, judged the way the kernel runs them: a query goes through
//! `nat_output` and `output` with the device of its first route, is routed again after the
//! rewrite, and goes through `dns_guard` with the device it really leaves by. A small
//! evaluator of the plan's rules (pure) replays every combination of first and final route,
//! for every `--lan` mode, and checks where queries may leave.

use std::net::{IpAddr, Ipv4Addr};

use crate::discovery::{Interface, Network, Prefix};
use crate::plan::{plan, Action, Chain, Match, Ruleset, CHAIN_DNS_GUARD, CHAIN_OUTPUT, L4};
use crate::policy::{LanMode, Policy, Profile};

/// One locally generated packet as the chains of one hook see it.
#[derive(Debug, Clone)]
struct Packet {
    /// `oifname` as the hook sees it.
    oif: &'static str,
    daddr: IpAddr,
    l4: L4,
    dport: u16,
    /// Whether NAT rewrote its destination (`ct status dnat`).
    dnat: bool,
}

/// What a chain did with a packet: its first terminal verdict, or the policy (accept).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    Refused,
    Dnat(Ipv4Addr),
    Other(Action),
}

fn matches(rs: &Ruleset, m: &Match, p: &Packet) -> bool {
    match m {
        Match::Oif(pat) => pat.matches(p.oif),
        Match::Iif(_) | Match::Saddr(_) | Match::SkUid(_) | Match::Sport(..) => false,
        Match::Nfproto(f) => (*f == crate::plan::Family::V4) == p.daddr.is_ipv4(),
        Match::L4proto(n) => *n == p.l4.number(),
        Match::Daddr(prefix) => prefix.contains(&Prefix::new(p.daddr, 128)),
        Match::DaddrIn(set, _) => rs.set(set).is_some_and(|s| s.elements.contains(&p.daddr)),
        Match::Dport(l4, port) => *l4 == p.l4 && *port == p.dport,
        Match::HopLimit(_) | Match::Icmpv6Type(_) => false,
        Match::CtStatusDnat => p.dnat,
        // Only in the forwarding chains, which these locally generated packets never reach.
        Match::DaddrLocal => p.daddr.is_loopback(),
        Match::CtDirectionReply => false,
    }
}

fn run(rs: &Ruleset, chain: &Chain, p: &Packet) -> Verdict {
    for rule in &chain.rules {
        if !rule.matches.iter().all(|m| matches(rs, m, p)) {
            continue;
        }
        return match &rule.action {
            Action::Log { .. } => continue,
            Action::Accept => Verdict::Accept,
            Action::Return => Verdict::Accept,
            Action::Reject | Action::RejectTcpReset | Action::Drop => Verdict::Refused,
            Action::Dnat(a, 53) => Verdict::Dnat(*a),
            other => Verdict::Other(other.clone()),
        };
    }
    Verdict::Accept
}

/// Where a query ends: `Some(dst)` when it leaves by `final_oif` towards `dst`, `None` when
/// a chain refused it. `first_oif` is the device of the route to the original destination,
/// `final_oif` the device of the route to wherever NAT sent it.
fn send(
    rs: &Ruleset,
    dst: IpAddr,
    l4: L4,
    first_oif: &'static str,
    final_oif: &'static str,
) -> Option<IpAddr> {
    let chain = |name: &str| rs.chain(name).expect("chain");
    let mut p = Packet {
        oif: first_oif,
        daddr: dst,
        l4,
        dport: 53,
        dnat: false,
    };
    match run(rs, chain("nat_output"), &p) {
        Verdict::Dnat(to) if IpAddr::V4(to) != dst => {
            p.daddr = IpAddr::V4(to);
            p.dnat = true;
        }
        Verdict::Accept | Verdict::Dnat(_) => {}
        other => panic!("nat_output: {other:?}"),
    }
    if run(rs, chain(CHAIN_OUTPUT), &p) != Verdict::Accept {
        return None;
    }
    // Routed again after the rewrite: postrouting sees the real device.
    p.oif = final_oif;
    if run(rs, chain(CHAIN_DNS_GUARD), &p) != Verdict::Accept {
        return None;
    }
    Some(p.daddr)
}

/// A laptop on a LAN (eth0, 192.168.1.0/24), a second uplink (eth1), a network on the
/// resolver's own range (wlan0, 10.42.0.0/24, as NetworkManager's shared networks) and the
/// tunnel.
fn laptop() -> Network {
    let iface = |name: &str, index, addr: &str, len| Interface {
        name: name.into(),
        index,
        prefixes: vec![Prefix::new(addr.parse().unwrap(), len)],
    };
    Network {
        interfaces: vec![
            iface("lo", 1, "127.0.0.1", 8),
            iface("eth0", 2, "192.168.1.10", 24),
            iface("eth1", 3, "192.168.2.10", 24),
            iface("wlan0", 4, "10.42.0.57", 24),
            iface("tun0", 5, "10.42.0.2", 24),
        ],
        default_v4: Some("eth0".into()),
        default_v6: None,
        ipv6: true,
    }
}

const GATEWAY: &str = "198.51.100.7";

fn policy(lan: LanMode, debug: bool) -> Policy {
    Policy::builder()
        .gateway(GATEWAY.parse().unwrap())
        .gateway("2001:db8::7".parse().unwrap())
        .lan(lan)
        .debug(debug)
        .build()
        .unwrap()
}

fn every_default_plan() -> Vec<(String, Ruleset)> {
    let mut v = Vec::new();
    for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
        for debug in [false, true] {
            let rs = plan(&policy(lan, debug), &laptop()).unwrap();
            v.push((format!("--lan {lan} debug {debug}"), rs));
        }
    }
    v
}

const RESOLVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 42, 0, 1));
const PHYSICAL: [&str; 3] = ["eth0", "eth1", "wlan0"];

/// Original destinations of queries as desktops send them.
fn destinations() -> Vec<IpAddr> {
    [
        "192.168.1.1",     // the LAN router, what DHCP hands out
        "198.51.100.53",   // a public resolver
        "192.168.2.1",     // the second uplink's router
        "169.254.169.254", // a link-local resolver
        "10.42.0.53",      // someone on a network that uses the resolver's range
        "10.42.0.1",       // the resolver itself
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect()
}

#[test]
fn every_query_leaves_through_the_tunnel_to_the_resolver_whatever_its_first_route() {
    for (label, rs) in every_default_plan() {
        for dst in destinations() {
            for l4 in [L4::Udp, L4::Tcp] {
                for first in ["eth0", "eth1", "wlan0", "tun0"] {
                    if dst == RESOLVER && first != "tun0" {
                        continue; // not rewritten, so not routed again
                    }
                    assert_eq!(
                        send(&rs, dst, l4, first, "tun0"),
                        Some(RESOLVER),
                        "{label}: {l4:?} query to {dst} first routed via {first}, resolver \
                         routed through the tunnel"
                    );
                }
            }
        }
    }
}

#[test]
fn no_rewritten_query_leaves_a_physical_interface_whatever_the_routes_say() {
    for (label, rs) in every_default_plan() {
        for dst in destinations() {
            for l4 in [L4::Udp, L4::Tcp] {
                for first in ["eth0", "eth1", "wlan0", "tun0"] {
                    for last in PHYSICAL {
                        if dst == RESOLVER && first != last {
                            continue; // not rewritten, so not routed again
                        }
                        assert_eq!(
                            send(&rs, dst, l4, first, last),
                            None,
                            "{label}: {l4:?} query to {dst} first routed via {first}, resolver \
                             routed via {last}: it must not leave"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gateways_and_local_resolvers_keep_their_queries() {
    for (label, rs) in every_default_plan() {
        for l4 in [L4::Udp, L4::Tcp] {
            let gw: IpAddr = GATEWAY.parse().unwrap();
            assert_eq!(send(&rs, gw, l4, "eth0", "eth0"), Some(gw), "{label}");
            let gw6: IpAddr = "2001:db8::7".parse().unwrap();
            assert_eq!(send(&rs, gw6, l4, "eth0", "eth0"), Some(gw6), "{label}");
            for stub in ["127.0.0.53", "127.0.1.1", "192.168.1.10"] {
                let stub: IpAddr = stub.parse().unwrap();
                assert_eq!(send(&rs, stub, l4, "lo", "lo"), Some(stub), "{label}");
            }
        }
    }
}

#[test]
fn ipv6_dns_outside_the_tunnel_is_refused_twice() {
    for (label, rs) in every_default_plan() {
        for l4 in [L4::Udp, L4::Tcp] {
            for dst in ["fd00:1::1", "2001:db8:53::53", "fe80::1"] {
                let dst: IpAddr = dst.parse().unwrap();
                assert_eq!(send(&rs, dst, l4, "eth0", "eth0"), None, "{label}: {dst}");
                // The second guard alone: as if the output chain had let it through.
                let p = Packet {
                    oif: "eth0",
                    daddr: dst,
                    l4,
                    dport: 53,
                    dnat: false,
                };
                let guard = rs.chain(CHAIN_DNS_GUARD).unwrap();
                assert_eq!(run(&rs, guard, &p), Verdict::Refused, "{label}: {dst}");
            }
        }
    }
}

/// A connection that began before the firewall skipped NAT: the output chain refuses it
/// when it is not routed through the tunnel, and the guard would too.
#[test]
fn queries_that_skipped_nat_are_refused_in_output() {
    for (label, rs) in every_default_plan() {
        let output = rs.chain(CHAIN_OUTPUT).unwrap();
        for dst in destinations() {
            for l4 in [L4::Udp, L4::Tcp] {
                let p = Packet {
                    oif: "eth0",
                    daddr: dst,
                    l4,
                    dport: 53,
                    dnat: false,
                };
                assert_eq!(run(&rs, output, &p), Verdict::Refused, "{label}: {dst}");
            }
        }
    }
}

/// The guard judges port 53 only: everything else is left to the output chain.
#[test]
fn the_guard_touches_nothing_but_port_53() {
    for (label, rs) in every_default_plan() {
        let guard = rs.chain(CHAIN_DNS_GUARD).unwrap();
        assert_eq!(guard.hook, crate::plan::Hook::Postrouting, "{label}");
        assert_eq!(guard.kind, crate::plan::ChainKind::Filter, "{label}");
        for rule in &guard.rules {
            let refuses = matches!(rule.action, Action::Drop | Action::Reject);
            if refuses {
                assert!(
                    rule.matches
                        .iter()
                        .any(|m| matches!(m, Match::Dport(_, 53))),
                    "{label}: the guard refuses more than DNS: {rule:?}"
                );
            }
        }
        for port in [80, 443, 5353, 67] {
            let p = Packet {
                oif: "eth0",
                daddr: "203.0.113.10".parse().unwrap(),
                l4: L4::Udp,
                dport: port,
                dnat: false,
            };
            assert_eq!(run(&rs, guard, &p), Verdict::Accept, "{label}: port {port}");
        }
    }
}

#[test]
fn compat_keeps_the_original_rules() {
    let p = Policy::builder()
        .gateway(GATEWAY.parse().unwrap())
        .profile(Profile::Compat)
        .build()
        .unwrap();
    let rs = plan(&p, &laptop()).unwrap();
    assert!(rs.chain(CHAIN_DNS_GUARD).is_none());
    assert!(rs
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .all(|r| !r.matches.contains(&Match::CtStatusDnat)));
}

/// The old rules, replayed: both failures of issue 9 are what the evaluator finds.
#[test]
fn the_evaluator_finds_both_failures_of_the_old_rules() {
    let mut rs = plan(&policy(LanMode::Private, false), &laptop()).unwrap();
    let output = rs
        .chains
        .iter_mut()
        .find(|c| c.name == CHAIN_OUTPUT)
        .unwrap();
    output
        .rules
        .retain(|r| !r.matches.contains(&Match::CtStatusDnat));
    let guard = rs
        .chains
        .iter_mut()
        .find(|c| c.name == CHAIN_DNS_GUARD)
        .unwrap();
    guard.rules.clear();
    let router: IpAddr = "192.168.1.1".parse().unwrap();
    let public: IpAddr = "198.51.100.53".parse().unwrap();
    assert_eq!(send(&rs, router, L4::Udp, "eth0", "tun0"), None);
    assert_eq!(send(&rs, public, L4::Udp, "tun0", "eth0"), Some(RESOLVER));
}
