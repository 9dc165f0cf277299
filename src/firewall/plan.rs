//! Ruleset plan: a pure function from (policy, network) to the rules, with no I/O.
//!
//! The [`Ruleset`] is a small intermediate form: one `inet` table with named sets and base
//! chains holding [`Rule`]s made of [`Match`]es and an [`Action`]. [`crate::render`] prints it
//! in nft syntax (what `nft list table` shows), [`crate::nft::encode`] encodes it as one
//! netlink batch. Because both read the same value, what you see with `--dry-run` is what is applied.
//!
//! ## Why one `inet` table
//! One `inet` table holds the filter and the NAT chains for IPv4 and IPv6 together, so the
//! whole kill switch is created, replaced and removed as one object in one transaction, and
//! `reject` uses ICMPX codes that the kernel translates correctly for each family (in `ip` or
//! `ip6` tables the same code numbers would mean host-unreachable). NAT chains in `inet` tables need
//! Linux 5.2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::discovery::{private_ranges, Network};
use crate::policy::{LanMode, Policy, Profile};

pub use crate::nft::ruleset::{
    Action, Chain, ChainKind, Family, Hook, IfPattern, Match, Prefix, Rule, Ruleset, Set,
    IPPROTO_ICMPV6, L4, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_SOLICIT,
};

/// The name of the VPN firewall's table (`table inet bitmask`).
pub const TABLE: &str = "bitmask";
/// The name of the filter chain hooked at output.
pub const CHAIN_OUTPUT: &str = "output";
/// The log prefix of `--debug`, as the original's.
pub const LOG_PREFIX: &str = "iptables denied: ";
/// The first words of the table comment of the VPN firewall.
pub const RECORD_TAG: &str = "bitmask-root firewall";

/// Why no ruleset could be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--compat` binds to the default device, and there is none.
    #[error("no IPv4 default route: the --compat profile binds its rules to the default route's device; connect to a network first, or use the default profile, which needs none")]
    NoDefaultRoute,
}

fn v4(a: [u8; 4], len: u8) -> Prefix {
    Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len)
}

fn v6(a: Ipv6Addr, len: u8) -> Prefix {
    Prefix::new(IpAddr::V6(a), len)
}

fn exact(name: &str) -> IfPattern {
    IfPattern::exact(name)
}

/// The set names for gateways.
pub fn gateway_set_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "gateways4",
        Family::V6 => "gateways6",
    }
}

/// The multicast discovery services that stay open: SSDP and mDNS, IPv4 and IPv6.
fn discovery_multicast(ipv6: bool) -> Vec<(Prefix, u16)> {
    let mut m = vec![
        (v4([239, 255, 255, 250], 32), 1900),
        (v4([224, 0, 0, 251], 32), 5353),
    ];
    if ipv6 {
        m.push((v6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xc), 128), 1900));
        m.push((v6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb), 128), 5353));
    }
    m
}

/// The text stored in the table comment: every policy field but the gateways (which live in
/// the sets). [`crate::status`] parses it back with [`parse_record`].
pub fn record(policy: &Policy) -> String {
    format!(
        "{RECORD_TAG}; profile {}; lan {}; resolver {}; tunnel {}; debug {}",
        policy.profile().as_str(),
        policy.lan(),
        policy.resolver(),
        policy.tunnel(),
        if policy.debug() { "on" } else { "off" }
    )
}

/// Parses a record written by [`record`] back into a policy builder (gateways still to add).
/// Returns `None` for anything else, including a record whose fingerprint part was removed.
pub fn parse_record(text: &str) -> Option<crate::policy::PolicyBuilder> {
    let mut parts = text.split("; ");
    if parts.next()? != RECORD_TAG {
        return None;
    }
    let mut b = Policy::builder();
    let mut field = |key: &str| -> Option<String> {
        let p = parts.next()?;
        p.strip_prefix(key)?.strip_prefix(' ').map(str::to_string)
    };
    b = b.profile(match field("profile")?.as_str() {
        "default" => Profile::Default,
        "compat" => Profile::Compat,
        _ => return None,
    });
    b = b.lan(field("lan")?.parse().ok()?);
    b = b.resolver(field("resolver")?.parse().ok()?);
    b = b.tunnel(field("tunnel")?.parse().ok()?);
    b = b.debug(match field("debug")?.as_str() {
        "on" => true,
        "off" => false,
        _ => return None,
    });
    Some(b)
}

/// Plans the VPN firewall for this policy on this network. Pure: no I/O.
pub fn plan(policy: &Policy, net: &Network) -> Result<Ruleset, PlanError> {
    let mut sets = Vec::new();
    for family in [Family::V4, Family::V6] {
        let elements: Vec<IpAddr> = policy
            .gateways()
            .iter()
            .copied()
            .filter(|g| g.is_ipv4() == (family == Family::V4))
            .collect();
        if !elements.is_empty() && (family == Family::V4 || net.ipv6) {
            sets.push(Set {
                name: gateway_set_name(family).into(),
                family,
                elements,
            });
        }
    }
    let (output, nat_output, set_ip_forward) = match policy.profile() {
        Profile::Default => (
            default_output(policy, net, &sets),
            default_nat(policy, &sets),
            false,
        ),
        Profile::Compat => {
            let (out, nat) = compat(policy, net)?;
            (out, nat, true)
        }
    };
    let resolver = v4(policy.resolver().octets(), 32);
    let nat_postrouting = [L4::Udp, L4::Tcp]
        .map(|p| {
            Rule::new(
                [Match::Daddr(resolver), Match::Dport(p, 53)],
                Action::Masquerade,
            )
        })
        .to_vec();
    Ok(Ruleset {
        table: TABLE.into(),
        record: record(policy),
        sets,
        chains: vec![
            Chain {
                name: CHAIN_OUTPUT.into(),
                hook: Hook::Output,
                kind: ChainKind::Filter,
                priority: 0,
                rules: output,
            },
            Chain {
                name: "nat_output".into(),
                hook: Hook::Output,
                kind: ChainKind::Nat,
                priority: -100,
                rules: nat_output,
            },
            Chain {
                name: "nat_postrouting".into(),
                hook: Hook::Postrouting,
                kind: ChainKind::Nat,
                priority: 100,
                rules: nat_postrouting,
            },
        ],
        set_ip_forward,
    })
}

/// The LAN prefixes to open: (interface, prefix), skipping loopback, the tunnel, host routes,
/// and IPv6 when the kernel has none.
fn lan_prefixes(policy: &Policy, net: &Network) -> Vec<(String, Prefix)> {
    let private = private_ranges();
    let mut out = Vec::new();
    if policy.lan() == LanMode::Off {
        return out;
    }
    for iface in &net.interfaces {
        if iface.name == "lo" || policy.tunnel().matches(&iface.name) {
            continue;
        }
        for p in &iface.prefixes {
            let keep = !p.is_host()
                && (p.addr().is_ipv4() || net.ipv6)
                && match policy.lan() {
                    LanMode::Private => private.iter().any(|r| r.contains(p)),
                    LanMode::OnLink => true,
                    LanMode::Off => false,
                };
            if keep {
                out.push((iface.name.clone(), *p));
            }
        }
    }
    out
}

fn default_output(policy: &Policy, net: &Network, sets: &[Set]) -> Vec<Rule> {
    use Action::*;
    use Match::*;
    let mut r = vec![
        // Loopback and the tunnel are never filtered: they are where traffic is meant to go.
        Rule::new([Oif(exact("lo"))], Accept),
        Rule::new([Oif(policy.tunnel().clone())], Accept),
    ];
    for set in sets {
        r.push(Rule::new([DaddrIn(set.name.clone(), set.family)], Accept));
    }
    // DNS may leave only through loopback, the tunnel or to a gateway (all accepted above).
    // Everything else on port 53 was rewritten to the resolver by nat_output; with the tunnel
    // down it would go out in clear, so it is rejected here, before the LAN is opened. IPv6
    // DNS is not rewritten and is rejected the same way.
    r.push(Rule::new([Dport(L4::Udp, 53)], Reject));
    r.push(Rule::new([Dport(L4::Tcp, 53)], Reject));
    // DHCP keeps the lease alive in every LAN mode.
    r.push(Rule::new([Sport(L4::Udp, 68), Dport(L4::Udp, 67)], Accept));
    if net.ipv6 {
        let all_dhcp6 = v6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2), 128);
        r.push(Rule::new(
            [Daddr(all_dhcp6), Sport(L4::Udp, 546), Dport(L4::Udp, 547)],
            Accept,
        ));
        // Neighbour discovery, whatever the addresses (a neighbour may solicit from its ULA or
        // global address, and expects the answer there). Hop limit 255 is what RFC 4861 sends
        // and requires of a receiver, so these never leave the link in a useful form.
        for t in [ND_ROUTER_SOLICIT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT] {
            r.push(Rule::new([HopLimit(255), Icmpv6Type(t)], Accept));
        }
        // Everything else ICMPv6 (MLD, link-local echo) to link-local unicast and link-scope
        // multicast, which no router forwards.
        for p in [
            v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
            v6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0), 16),
        ] {
            r.push(Rule::new([Daddr(p), L4proto(IPPROTO_ICMPV6)], Accept));
        }
    }
    for (iface, prefix) in lan_prefixes(policy, net) {
        r.push(Rule::new([Oif(exact(&iface)), Daddr(prefix)], Accept));
    }
    for (group, port) in discovery_multicast(net.ipv6) {
        r.push(Rule::new([Daddr(group), Dport(L4::Udp, port)], Accept));
    }
    if policy.debug() {
        r.push(Rule::new(
            [],
            Log {
                prefix: LOG_PREFIX.into(),
                level: 7,
            },
        ));
    }
    // Everything else, every family and protocol, whatever the interface. TCP gets a reset:
    // the application sees "connection refused" at once (an ICMPv6 error reaching a socket in
    // the middle of connect() is only noted, and IPv6 connects would fail a second later).
    r.push(Rule::new([L4proto(L4::Tcp.number())], RejectTcpReset));
    r.push(Rule::new([], Reject));
    r
}

fn dns_rewrite(policy: &Policy) -> Vec<Rule> {
    [L4::Udp, L4::Tcp]
        .map(|p| {
            Rule::new(
                [Match::Nfproto(Family::V4), Match::Dport(p, 53)],
                Action::Dnat(policy.resolver(), 53),
            )
        })
        .to_vec()
}

fn default_nat(policy: &Policy, sets: &[Set]) -> Vec<Rule> {
    let mut r = Vec::new();
    if let Some(set) = sets.iter().find(|s| s.family == Family::V4) {
        // DNS to a gateway is not rewritten (a gateway may serve DNS itself).
        r.push(Rule::new(
            [Match::DaddrIn(set.name.clone(), Family::V4)],
            Action::Return,
        ));
    }
    // Local stubs (127.0.0.53 systemd-resolved, 127.0.1.1 dnsmasq, 127.0.0.1, and the host's
    // own addresses) are routed through loopback and keep their queries, udp and tcp.
    r.push(Rule::new([Match::Oif(exact("lo"))], Action::Return));
    r.extend(dns_rewrite(policy));
    r
}

/// The original's rules (the seed's listing), as nftables expresses them.
fn compat(policy: &Policy, net: &Network) -> Result<(Vec<Rule>, Vec<Rule>), PlanError> {
    use Action::*;
    use Match::*;
    let dev_name = net.default_v4.as_deref().ok_or(PlanError::NoDefaultRoute)?;
    let dev = || Oif(exact(dev_name));
    let prefixes = net
        .interface(dev_name)
        .map(|i| i.prefixes.clone())
        .unwrap_or_default();
    let lan4 = prefixes.iter().find(|p| p.addr().is_ipv4()).copied();
    let lan6 = prefixes
        .iter()
        .find(|p| !p.addr().is_ipv4())
        .copied()
        .filter(|_| net.ipv6);
    let mut out = Vec::new();
    if let Some(lan) = lan4 {
        out.push(Rule::new([dev(), Daddr(lan)], Accept));
        out.push(Rule::new([dev(), Saddr(lan), Dport(L4::Udp, 53)], Accept));
        out.push(Rule::new([dev(), Saddr(lan), Dport(L4::Tcp, 53)], Accept));
    }
    let multicast = discovery_multicast(net.ipv6);
    for (group, port) in multicast.iter().filter(|(g, _)| g.addr().is_ipv4()) {
        out.push(Rule::new(
            [dev(), Daddr(*group), Dport(L4::Udp, *port)],
            Return,
        ));
    }
    for gw in policy.gateways().iter().filter(|g| g.is_ipv4()) {
        out.push(Rule::new([dev(), Daddr(Prefix::new(*gw, 32))], Accept));
    }
    if policy.debug() {
        out.push(Rule::new(
            [dev(), Nfproto(Family::V4)],
            Log {
                prefix: LOG_PREFIX.into(),
                level: 7,
            },
        ));
    }
    out.push(Rule::new([dev(), Nfproto(Family::V4)], Reject));
    if net.ipv6 {
        if let Some(lan) = lan6 {
            out.push(Rule::new([dev(), Daddr(lan)], Accept));
        }
        for (group, port) in multicast.iter().filter(|(g, _)| !g.addr().is_ipv4()) {
            out.push(Rule::new(
                [dev(), Daddr(*group), Dport(L4::Udp, *port)],
                Return,
            ));
        }
        if policy.debug() {
            out.push(Rule::new(
                [dev(), Nfproto(Family::V6)],
                Log {
                    prefix: LOG_PREFIX.into(),
                    level: 7,
                },
            ));
        }
        for p in [L4::Tcp, L4::Udp] {
            out.push(Rule::new(
                [Nfproto(Family::V6), L4proto(p.number())],
                Reject,
            ));
        }
    }
    let mut nat = Vec::new();
    for gw in policy.gateways().iter().filter(|g| g.is_ipv4()) {
        nat.push(Rule::new([Daddr(Prefix::new(*gw, 32))], Return));
    }
    for stub in [[127, 0, 1, 1], [127, 0, 0, 1], [127, 0, 0, 53]] {
        nat.push(Rule::new([Daddr(v4(stub, 32)), Dport(L4::Udp, 53)], Accept));
    }
    nat.extend(dns_rewrite(policy));
    Ok((out, nat))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Interface;

    fn seed_network() -> Network {
        Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![v4([127, 0, 0, 0], 8)],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: vec![v4([192, 168, 1, 0], 24)],
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    #[test]
    fn record_round_trips() {
        let p = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .lan(LanMode::OnLink)
            .debug(true)
            .profile(Profile::Compat)
            .resolver(crate::policy::RESOLVER_TCP)
            .build()
            .unwrap();
        let back = parse_record(&record(&p))
            .unwrap()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        assert_eq!(back, p);
        assert!(parse_record("bitmask-root firewall; profile default").is_none());
        assert!(parse_record("something else").is_none());
    }

    #[test]
    fn public_on_link_prefixes_are_not_trusted_by_default() {
        let mut net = seed_network();
        net.interfaces[1].prefixes.push(v4([203, 0, 113, 0], 24));
        let gw = "198.51.100.7".parse().unwrap();
        let private = plan(&Policy::builder().gateway(gw).build().unwrap(), &net).unwrap();
        let onlink = plan(
            &Policy::builder()
                .gateway(gw)
                .lan(LanMode::OnLink)
                .build()
                .unwrap(),
            &net,
        )
        .unwrap();
        let off = plan(
            &Policy::builder()
                .gateway(gw)
                .lan(LanMode::Off)
                .build()
                .unwrap(),
            &net,
        )
        .unwrap();
        let has = |rs: &Ruleset, p: Prefix| {
            rs.chain(CHAIN_OUTPUT)
                .unwrap()
                .rules
                .iter()
                .any(|r| r.matches.contains(&Match::Daddr(p)))
        };
        let public = v4([203, 0, 113, 0], 24);
        let lan = v4([192, 168, 1, 0], 24);
        assert!(has(&private, lan) && !has(&private, public));
        assert!(has(&onlink, lan) && has(&onlink, public));
        assert!(!has(&off, lan) && !has(&off, public));
    }

    #[test]
    fn ipv6_disabled_leaves_the_ipv6_part_out() {
        let mut net = seed_network();
        net.ipv6 = false;
        let p = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .gateway("2001:db8::7".parse().unwrap())
            .build()
            .unwrap();
        let rs = plan(&p, &net).unwrap();
        assert!(rs.set("gateways6").is_none());
        assert!(rs.chains.iter().flat_map(|c| &c.rules).all(|r| !r
            .matches
            .iter()
            .any(|m| matches!(m, Match::Daddr(p) if !p.addr().is_ipv4()))));
    }

    #[test]
    fn compat_needs_a_default_route() {
        let mut net = seed_network();
        net.default_v4 = None;
        let p = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .profile(Profile::Compat)
            .build()
            .unwrap();
        assert_eq!(plan(&p, &net), Err(PlanError::NoDefaultRoute));
        let p2 = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        assert!(
            plan(&p2, &net).is_ok(),
            "the default profile starts without any route"
        );
    }
}
