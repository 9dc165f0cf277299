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
use crate::policy::{LanMode, Mode, Policy, Profile};

pub use crate::nft::ruleset::{
    Action, Chain, ChainKind, Family, Hook, IfPattern, Match, Prefix, Rule, Ruleset, Set,
    IPPROTO_ICMPV6, L4, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_SOLICIT,
};

/// The name of the VPN firewall's table (`table inet bitmask`).
pub const TABLE: &str = "bitmask";
/// The name of the filter chain hooked at output.
pub const CHAIN_OUTPUT: &str = "output";
/// The name of the filter chain hooked at postrouting that lets DNS leave only through
/// loopback, the tunnel or to a gateway (default profile only).
pub const CHAIN_DNS_GUARD: &str = "dns_guard";
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

/// The field of the table comment that marks a blocking policy ([`Mode::Block`]); a
/// connecting policy has none, so its comment reads as it always did.
pub const RECORD_BLOCK: &str = "mode block";

/// The text stored in the table comment: every policy field but the gateways (which live in
/// the sets). [`crate::status`] parses it back with [`parse_record`].
pub fn record(policy: &Policy) -> String {
    let on_off = |b: bool| if b { "on" } else { "off" };
    let mode = match policy.mode() {
        Mode::Connect => String::new(),
        Mode::Block => format!("; {RECORD_BLOCK}"),
    };
    format!(
        "{RECORD_TAG}{mode}; profile {}; lan {}; resolver {}; tunnel {}; debug {}; forward {}",
        policy.profile().as_str(),
        policy.lan(),
        policy.resolver(),
        policy.tunnel(),
        on_off(policy.debug()),
        on_off(policy.forward()),
    )
}

/// Parses a record written by [`record`] back into a policy builder (gateways still to add).
/// Returns `None` for anything else, including a record whose fingerprint part was removed.
pub fn parse_record(text: &str) -> Option<crate::policy::PolicyBuilder> {
    let mut parts = text.split("; ").peekable();
    if parts.next()? != RECORD_TAG {
        return None;
    }
    fn field<'a>(parts: &mut impl Iterator<Item = &'a str>, key: &str) -> Option<&'a str> {
        parts.next()?.strip_prefix(key)?.strip_prefix(' ')
    }
    let on_off = |v: &str| match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let mut b = Policy::builder();
    if parts.next_if_eq(&RECORD_BLOCK).is_some() {
        b = b.mode(Mode::Block);
    }
    b = b.profile(match field(&mut parts, "profile")? {
        "default" => Profile::Default,
        "compat" => Profile::Compat,
        _ => return None,
    });
    b = b.lan(field(&mut parts, "lan")?.parse().ok()?);
    b = b.resolver(field(&mut parts, "resolver")?.parse().ok()?);
    b = b.tunnel(field(&mut parts, "tunnel")?.parse().ok()?);
    b = b.debug(on_off(field(&mut parts, "debug")?)?);
    // Tables started before forwarding was covered have no such field, and no such rules.
    b = b.forward(match parts.peek() {
        None => false,
        Some(_) => on_off(field(&mut parts, "forward")?)?,
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
    let (output, guard, nat_output, set_ip_forward) = match policy.profile() {
        Profile::Default => (
            default_output(policy, net, &sets),
            Some(dns_guard(policy, &sets)),
            default_nat(policy, &sets),
            false,
        ),
        Profile::Compat => {
            let (out, nat) = compat(policy, net)?;
            (out, None, nat, true)
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
    let forwarding = crate::firewall::forward::chains(policy, net, &sets);
    let mut rs = Ruleset {
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
    };
    if let Some(guard) = guard {
        // Listed right after the filter output chain it completes.
        rs.chains.insert(1, guard);
    }
    rs.chains.extend(forwarding);
    count_refusals(&mut rs);
    Ok(rs)
}

/// Every rule that refuses packets counts them (`counter`), so `firewall status` can say how
/// many packets the kill switch stopped, and of which kind.
fn count_refusals(rs: &mut Ruleset) {
    for rule in rs.chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
        rule.counter = match rule.action {
            Action::Reject | Action::RejectTcpReset | Action::Drop => true,
            Action::Accept
            | Action::Return
            | Action::Log { .. }
            | Action::Dnat(..)
            | Action::Masquerade => false,
        };
    }
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
    r.extend(dns_output(policy));
    r.extend(local_then_reject(policy, net));
    r
}

/// The end of a filter chain that judges by the output interface (output, and forward): the
/// link's own protocols (DHCP, IPv6 neighbour discovery), the local network per `--lan`,
/// SSDP and mDNS, then reject everything else.
pub(crate) fn local_then_reject(policy: &Policy, net: &Network) -> Vec<Rule> {
    use Action::*;
    use Match::*;
    let mut r = Vec::new();
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

/// DNS in the filter `output` chain, after loopback, the tunnel and the gateways were
/// accepted: a query that `nat_output` rewrote to the resolver is let on to the
/// [`CHAIN_DNS_GUARD`] chain, which judges it by the interface it really leaves by; every other
/// port-53 packet is rejected at once, before the LAN is opened (IPv6 DNS, which is not
/// rewritten, and packets of connections that skipped NAT because they began before the
/// firewall).
///
/// Why the rewritten queries cannot be judged here: the kernel runs every output chain with
/// the device of the route chosen *before* the hook (`oifname` is that device). `nat_output`
/// (priority -100) rewrites the destination and the kernel routes the packet again, but this
/// chain (priority 0) still sees the old device: a query to the LAN router would look like it
/// leaves by `eth0` (and used to be rejected, so DNS failed on every desktop whose resolver is
/// the router), a query to a public resolver like it leaves by the tunnel (and used to be
/// accepted, then left by `eth0` in clear when the resolver was routed there).
fn dns_output(policy: &Policy) -> Vec<Rule> {
    use Match::*;
    let resolver = v4(policy.resolver().octets(), 32);
    let mut r: Vec<Rule> = [L4::Udp, L4::Tcp]
        .map(|p| {
            Rule::new(
                [CtStatusDnat, Daddr(resolver), Dport(p, 53)],
                Action::Accept,
            )
        })
        .to_vec();
    r.push(Rule::new([Dport(L4::Udp, 53)], Action::Reject));
    r.push(Rule::new([Dport(L4::Tcp, 53)], Action::Reject));
    r
}

/// The `dns_guard` chain, hooked at postrouting, where the output device is the one the
/// packet really leaves by (after the rewrite and the new route): port-53 packets, udp and
/// tcp, IPv4 and IPv6, may leave only through loopback, the tunnel or to a gateway; every
/// other one is dropped, whatever the routes say. `reject` is not allowed at postrouting; the
/// drop fails a udp `sendmsg` at once with `EPERM`, while a tcp connect gets no answer and
/// fails when the application gives up (its SYNs are dropped each time, nothing leaves).
fn dns_guard(policy: &Policy, sets: &[Set]) -> Chain {
    use Match::*;
    let mut r = vec![
        Rule::new([Oif(exact("lo"))], Action::Accept),
        Rule::new([Oif(policy.tunnel().clone())], Action::Accept),
    ];
    for set in sets {
        r.push(Rule::new(
            [DaddrIn(set.name.clone(), set.family)],
            Action::Accept,
        ));
    }
    for p in [L4::Udp, L4::Tcp] {
        if policy.debug() {
            r.push(Rule::new(
                [Dport(p, 53)],
                Action::Log {
                    prefix: LOG_PREFIX.into(),
                    level: 7,
                },
            ));
        }
        r.push(Rule::new([Dport(p, 53)], Action::Drop));
    }
    Chain {
        name: CHAIN_DNS_GUARD.into(),
        hook: Hook::Postrouting,
        kind: ChainKind::Filter,
        priority: 0,
        rules: r,
    }
}

pub(crate) fn dns_rewrite(policy: &Policy) -> Vec<Rule> {
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
        let block = Policy::builder().mode(Mode::Block).build().unwrap();
        assert_eq!(
            record(&block),
            "bitmask-root firewall; mode block; profile default; lan private; resolver 10.42.0.1; tunnel tun*; debug off; forward on"
        );
        assert_eq!(parse_record(&record(&block)).unwrap().build(), Ok(block));
        assert!(
            parse_record("bitmask-root firewall; mode other; profile default; lan private; resolver 10.42.0.1; tunnel tun*; debug off").is_none()
        );
        assert!(parse_record("something else").is_none());
    }

    #[test]
    fn record_keeps_the_forward_switch() {
        let gw: IpAddr = "198.51.100.7".parse().unwrap();
        for forward in [true, false] {
            let p = Policy::builder()
                .gateway(gw)
                .forward(forward)
                .build()
                .unwrap();
            let text = record(&p);
            assert!(text.ends_with(if forward {
                "; forward on"
            } else {
                "; forward off"
            }));
            let back = parse_record(&text).unwrap().gateway(gw).build().unwrap();
            assert_eq!(back, p);
        }
        // A table started before forwarding was covered: no field, and no forwarding rules.
        let old = "bitmask-root firewall; profile default; lan private; resolver 10.42.0.1; tunnel tun*; debug off";
        let back = parse_record(old).unwrap().gateway(gw).build().unwrap();
        assert!(!back.forward());
        let bad = format!("{old}; forward maybe");
        assert!(parse_record(&bad).is_none());
        let bad = format!("{old}; forwards on");
        assert!(parse_record(&bad).is_none());
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
    fn block_opens_no_gateway_and_keeps_the_rest() {
        let net = seed_network();
        let block = plan(&Policy::builder().mode(Mode::Block).build().unwrap(), &net).unwrap();
        assert!(block.sets.is_empty(), "no gateway set");
        let text = crate::render::render(&block, "X");
        assert!(!text.contains("@gateways"), "{text}");
        let start = plan(
            &Policy::builder()
                .gateway("198.51.100.7".parse().unwrap())
                .build()
                .unwrap(),
            &net,
        )
        .unwrap();
        // Apart from the gateway rules, the same rules: the LAN, DHCP, neighbour discovery,
        // DNS only through the tunnel, and the final rejects.
        for chain in &start.chains {
            let kept: Vec<&Rule> = chain
                .rules
                .iter()
                .filter(|r| !r.matches.iter().any(|m| matches!(m, Match::DaddrIn(..))))
                .collect();
            let blocked: Vec<&Rule> = block.chain(&chain.name).unwrap().rules.iter().collect();
            assert_eq!(kept, blocked, "chain {}", chain.name);
        }
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
