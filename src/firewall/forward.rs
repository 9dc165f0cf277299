//! The forwarding half of the kill switch: what this host routes for others (containers, VMs,
//! a shared connection or hotspot) is judged like what it sends itself.
//!
//! Two chains, in the same table and the same transaction as the rest:
//!
//! - `forward` (filter, hook forward, priority filter). At the forward hook routing has been
//!   done, after any destination rewrite at prerouting, so the output interface is the one the
//!   packet really leaves by, as in the output chain: out through the tunnel, accept; replies
//!   that came in through the tunnel, accept; to a gateway, reject (a container or VM needs no
//!   clear path to the VPN server: its traffic goes through the host's tunnel); DNS that does
//!   not leave through the tunnel, reject; then the same tail as the output chain (DHCP and
//!   IPv6 neighbour discovery for bridged guests, the local network per `--lan` bound to its
//!   interface, SSDP and mDNS) and reject everything else, IPv4 and IPv6, every protocol.
//!   There is no blanket `ct state established` accept: a connection a container opened in
//!   clear before start stays blocked.
//! - `nat_prerouting` (nat, hook prerouting, priority dstnat): forwarded DNS follows the
//!   host's rule. A query to an address of this host (`fib daddr type local`: libvirt's
//!   dnsmasq on the bridge, a stub on the host, a port published by Docker), to a gateway, or
//!   arriving through loopback or the tunnel is left alone; every other IPv4 udp/tcp port-53
//!   packet is rewritten to the VPN's resolver, which the forward chain lets out only through
//!   the tunnel. The `nat_postrouting` masquerade of packets to the resolver covers forwarded
//!   ones too, so a routed subnet without masquerade still gets its answers.
//!
//! Docker's and libvirt's own rules (iptables-nft `ip filter` FORWARD with policy drop,
//! `ip nat` masquerade) live in other tables: a packet must pass every base chain at a hook,
//! so an accept here opens no hole in theirs, and these rules do not rely on theirs.
//! `ip_forward` is never changed.

use crate::discovery::Network;
use crate::plan::{
    dns_rewrite, gateway_set_name, local_then_reject, Action, Chain, ChainKind, Family, Hook,
    IfPattern, Match, Rule, Set, L4,
};
use crate::policy::{Policy, Profile};

/// The name of the filter chain hooked at forward.
pub const CHAIN_FORWARD: &str = "forward";
/// The name of the nat chain hooked at prerouting (forwarded DNS).
pub const CHAIN_NAT_PREROUTING: &str = "nat_prerouting";

/// The forwarding chains for `policy` (none with `--forward off` or `--compat`).
pub(crate) fn chains(policy: &Policy, net: &Network, sets: &[Set]) -> Vec<Chain> {
    if !policy.forward() || policy.profile() != Profile::Default {
        return Vec::new();
    }
    vec![
        Chain {
            name: CHAIN_FORWARD.into(),
            hook: Hook::Forward,
            kind: ChainKind::Filter,
            priority: 0,
            rules: filter(policy, net, sets),
        },
        Chain {
            name: CHAIN_NAT_PREROUTING.into(),
            hook: Hook::Prerouting,
            kind: ChainKind::Nat,
            priority: -100,
            rules: nat(policy, sets),
        },
    ]
}

fn filter(policy: &Policy, net: &Network, sets: &[Set]) -> Vec<Rule> {
    use Action::*;
    use Match::*;
    let tunnel = policy.tunnel().clone();
    let mut r = vec![
        Rule::new([Oif(tunnel.clone())], Accept),
        // The way back of what left through the tunnel (a container's masqueraded connection,
        // a hotspot client's), whatever `--lan` says about the interface it goes to. Only the
        // reply direction: nothing that starts on the tunnel's side is let in by this rule.
        Rule::new([Iif(tunnel), CtDirectionReply], Accept),
    ];
    for set in sets {
        r.push(Rule::new([DaddrIn(set.name.clone(), set.family)], Reject));
    }
    // Port 53 that does not leave through the tunnel: what nat_prerouting rewrote to the
    // resolver (with the tunnel down it would go out in clear), IPv6 DNS (never rewritten),
    // and queries of connections that were set up before start (never rewritten either).
    r.push(Rule::new([Dport(L4::Udp, 53)], Reject));
    r.push(Rule::new([Dport(L4::Tcp, 53)], Reject));
    r.extend(local_then_reject(policy, net));
    r
}

fn nat(policy: &Policy, sets: &[Set]) -> Vec<Rule> {
    let ret = |m: Match| Rule::new([m], Action::Return);
    let mut r = vec![
        ret(Match::Iif(IfPattern::exact("lo"))),
        ret(Match::Iif(policy.tunnel().clone())),
        // Resolvers of this host: on a bridge address, on loopback, behind a published port.
        ret(Match::DaddrLocal),
    ];
    if sets.iter().any(|s| s.family == Family::V4) {
        let name = gateway_set_name(Family::V4);
        r.push(ret(Match::DaddrIn(name.into(), Family::V4)));
    }
    r.extend(dns_rewrite(policy));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Interface, Prefix};
    use crate::plan::plan;
    use crate::policy::LanMode;

    fn host_with_docker() -> Network {
        let p = |a: &str, l| Prefix::new(a.parse().unwrap(), l);
        Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![p("127.0.0.1", 8)],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: vec![p("192.168.1.10", 24)],
                },
                Interface {
                    name: "docker0".into(),
                    index: 3,
                    prefixes: vec![p("172.17.0.1", 16)],
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    fn policy(
        f: impl FnOnce(crate::policy::PolicyBuilder) -> crate::policy::PolicyBuilder,
    ) -> Policy {
        f(Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .gateway("2001:db8::7".parse().unwrap()))
        .build()
        .unwrap()
    }

    fn texts(p: &Policy, chain: &str) -> Vec<String> {
        let rs = plan(p, &host_with_docker()).unwrap();
        rs.chain(chain)
            .map(|c| c.rules.iter().map(crate::render::rule_text).collect())
            .unwrap_or_default()
    }

    #[test]
    fn forward_chain_judges_by_the_real_output_interface() {
        let rules = texts(&policy(|b| b), CHAIN_FORWARD);
        let pos = |t: &str| {
            rules
                .iter()
                .position(|r| r == t)
                .unwrap_or_else(|| panic!("no rule `{t}` in {rules:#?}"))
        };
        let tunnel = pos(r#"oifname "tun*" accept"#);
        let replies = pos(r#"iifname "tun*" ct direction reply accept"#);
        let gw4 = pos("ip daddr @gateways4 counter reject");
        let gw6 = pos("ip6 daddr @gateways6 counter reject");
        let dns = pos("udp dport 53 counter reject");
        let docker = pos(r#"oifname "docker0" ip daddr 172.17.0.0/16 accept"#);
        let lan = pos(r#"oifname "eth0" ip daddr 192.168.1.0/24 accept"#);
        assert!(tunnel < gw4 && gw4 < gw6 && gw6 < dns && dns < docker && dns < lan);
        assert!(replies < gw4);
        assert_eq!(
            rules[rules.len() - 2..],
            [
                "meta l4proto tcp counter reject with tcp reset",
                "counter reject"
            ]
        );
        assert!(
            rules.iter().all(|r| !r.contains("ct state")),
            "no blanket accept of established connections: {rules:#?}"
        );
    }

    #[test]
    fn forwarded_dns_is_rewritten_unless_local_gateway_loopback_or_tunnel() {
        let rules = texts(&policy(|b| b), CHAIN_NAT_PREROUTING);
        assert_eq!(
            rules,
            [
                r#"iifname "lo" return"#,
                r#"iifname "tun*" return"#,
                "fib daddr type local return",
                "ip daddr @gateways4 return",
                "meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53",
                "meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53",
            ]
        );
        let rs = plan(&policy(|b| b), &host_with_docker()).unwrap();
        let c = rs.chain(CHAIN_NAT_PREROUTING).unwrap();
        assert_eq!(
            (c.hook, c.kind, c.priority),
            (Hook::Prerouting, ChainKind::Nat, -100)
        );
        let c = rs.chain(CHAIN_FORWARD).unwrap();
        assert_eq!(
            (c.hook, c.kind, c.priority),
            (Hook::Forward, ChainKind::Filter, 0)
        );
        assert!(
            !rs.set_ip_forward,
            "the default profile leaves ip_forward alone"
        );
    }

    #[test]
    fn lan_off_keeps_only_the_tunnel_and_its_replies() {
        let rules = texts(&policy(|b| b.lan(LanMode::Off)), CHAIN_FORWARD);
        assert!(rules
            .iter()
            .all(|r| !r.contains("172.17") && !r.contains("192.168")));
        assert!(rules.contains(&r#"iifname "tun*" ct direction reply accept"#.to_string()));
    }

    #[test]
    fn off_and_compat_have_no_forwarding_chains() {
        for p in [
            policy(|b| b.forward(false)),
            policy(|b| b.profile(Profile::Compat)),
            policy(|b| b.profile(Profile::Compat).forward(true)),
        ] {
            let rs = plan(&p, &host_with_docker()).unwrap();
            assert!(rs.chain(CHAIN_FORWARD).is_none() && rs.chain(CHAIN_NAT_PREROUTING).is_none());
            assert!(!p.forward());
        }
        assert!(policy(|b| b).forward(), "forwarding is covered by default");
    }

    #[test]
    fn the_tunnel_pattern_is_followed() {
        let rules = texts(&policy(|b| b.tunnel("wg0".parse().unwrap())), CHAIN_FORWARD);
        assert_eq!(rules[0], r#"oifname "wg0" accept"#);
        assert_eq!(rules[1], r#"iifname "wg0" ct direction reply accept"#);
    }
}
