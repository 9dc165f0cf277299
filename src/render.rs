//! Prints a [`Ruleset`] in nft syntax, the way `nft list table inet NAME` shows it.
//!
//! The text is what `--dry-run` prints and what the namespace tests compare with the kernel's
//! own listing, so it follows nft's layout: tabs, canonical priority names, dependencies such as
//! `meta l4proto udp` left implicit when `udp dport` implies them.

use std::fmt::{self, Write};

use crate::plan::{Action, Chain, ChainKind, Family, Hook, Match, Rule, Ruleset, IPPROTO_ICMPV6};

/// Renders the ruleset; `comment` is the table comment (the record plus fingerprint).
pub fn render(rs: &Ruleset, comment: &str) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_ruleset(&mut s, rs, comment);
    s
}

fn write_ruleset(s: &mut String, rs: &Ruleset, comment: &str) -> fmt::Result {
    writeln!(s, "table inet {} {{", rs.table)?;
    writeln!(s, "\tcomment {}", quote(comment))?;
    for (i, set) in rs.sets.iter().enumerate() {
        if i > 0 {
            writeln!(s)?;
        }
        writeln!(s, "\tset {} {{", set.name)?;
        let ty = match set.family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        writeln!(s, "\t\ttype {ty}")?;
        writeln!(s, "\t\tsize {}", set.elements.len())?;
        writeln!(s, "\t\telements = {{ {} }}", elements_text(set))?;
        writeln!(s, "\t}}")?;
    }
    for (i, chain) in rs.chains.iter().enumerate() {
        if i > 0 || !rs.sets.is_empty() {
            writeln!(s)?;
        }
        write_chain(s, chain)?;
    }
    writeln!(s, "}}")
}

/// The elements as nft lays them out: IPv4 addresses two to a line, IPv6 one to a line.
fn elements_text(set: &crate::plan::Set) -> String {
    let per_line = match set.family {
        Family::V4 => 2,
        Family::V6 => 1,
    };
    let mut out = String::new();
    for (i, e) in set.elements.iter().enumerate() {
        if i > 0 {
            out.push_str(if i % per_line == 0 {
                ",\n\t\t\t     "
            } else {
                ", "
            });
        }
        out.push_str(&e.to_string());
    }
    out
}

fn write_chain(s: &mut String, c: &Chain) -> fmt::Result {
    writeln!(s, "\tchain {} {{", c.name)?;
    let kind = match c.kind {
        ChainKind::Filter => "filter",
        ChainKind::Nat => "nat",
    };
    let hook = match c.hook {
        Hook::Input => "input",
        Hook::Output => "output",
        Hook::Postrouting => "postrouting",
    };
    writeln!(
        s,
        "\t\ttype {kind} hook {hook} priority {}; policy accept;",
        priority_name(c.kind, c.hook, c.priority)
    )?;
    for r in &c.rules {
        writeln!(s, "\t\t{}", rule_text(r))?;
    }
    writeln!(s, "\t}}")
}

/// nft's names for standard priorities in the inet family.
fn priority_name(kind: ChainKind, hook: Hook, prio: i32) -> String {
    match (kind, hook, prio) {
        (ChainKind::Filter, _, 0) => "filter".into(),
        (ChainKind::Nat, Hook::Postrouting | Hook::Input, 100) => "srcnat".into(),
        (_, _, p) => p.to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn family_kw(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn l4proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        IPPROTO_ICMPV6 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

/// One rule in nft syntax.
pub fn rule_text(r: &Rule) -> String {
    let mut parts: Vec<String> = r.matches.iter().map(match_text).collect();
    parts.push(action_text(&r.action));
    parts.join(" ")
}

fn match_text(m: &Match) -> String {
    match m {
        Match::Oif(p) => format!("oifname {}", quote(&p.to_string())),
        Match::Iif(p) => format!("iifname {}", quote(&p.to_string())),
        Match::Nfproto(f) => format!(
            "meta nfproto {}",
            match f {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            }
        ),
        Match::L4proto(p) => format!("meta l4proto {}", l4proto_name(*p)),
        Match::Daddr(p) => format!("{} daddr {p}", family_kw(family_of(p))),
        Match::Saddr(p) => format!("{} saddr {p}", family_kw(family_of(p))),
        Match::DaddrIn(set, f) => format!("{} daddr @{set}", family_kw(*f)),
        Match::Dport(l4, port) => format!("{} dport {port}", l4.name()),
        Match::Sport(l4, port) => format!("{} sport {port}", l4.name()),
        Match::SkUid(uid) => format!("meta skuid {uid}"),
        Match::HopLimit(h) => format!("ip6 hoplimit {h}"),
        Match::Icmpv6Type(t) => format!("icmpv6 type {}", icmpv6_type_name(*t)),
    }
}

fn icmpv6_type_name(t: u8) -> String {
    match t {
        133 => "nd-router-solicit".into(),
        134 => "nd-router-advert".into(),
        135 => "nd-neighbor-solicit".into(),
        136 => "nd-neighbor-advert".into(),
        137 => "nd-redirect".into(),
        n => n.to_string(),
    }
}

fn family_of(p: &crate::discovery::Prefix) -> Family {
    if p.addr().is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

fn action_text(a: &Action) -> String {
    match a {
        Action::Accept => "accept".into(),
        Action::Return => "return".into(),
        Action::Reject => "reject".into(),
        Action::RejectTcpReset => "reject with tcp reset".into(),
        Action::Log { prefix, level } => {
            format!("log prefix {} level {}", quote(prefix), level_name(*level))
        }
        Action::Dnat(addr, port) => format!("dnat ip to {addr}:{port}"),
        Action::Masquerade => "masquerade".into(),
    }
}

fn level_name(level: u32) -> String {
    match level {
        0 => "emerg".into(),
        1 => "alert".into(),
        2 => "crit".into(),
        3 => "err".into(),
        4 => "warn".into(),
        5 => "notice".into(),
        6 => "info".into(),
        7 => "debug".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::discovery::{Interface, Network, Prefix};
    use crate::plan::plan;
    use crate::policy::{Policy, Profile};

    /// A host with loopback and `eth0` holding these addresses (prefix lengths given).
    fn eth0_network(addrs: &[(&str, u8)]) -> Network {
        let prefix = |(a, l): &(&str, u8)| Prefix::new(a.parse().expect("address"), *l);
        Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![prefix(&("127.0.0.1", 8))],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: addrs.iter().map(prefix).collect(),
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    /// The seed's example: eth0 on 192.168.1.0/24 and its four gateways.
    fn seed() -> (Network, Vec<std::net::IpAddr>) {
        let net = eth0_network(&[("192.168.1.10", 24), ("fe80::1", 64)]);
        let gws = [
            "199.58.81.145",
            "198.252.153.28",
            "5.79.86.180",
            "1.209.122.29",
        ]
        .iter()
        .map(|g| g.parse().unwrap())
        .collect();
        (net, gws)
    }

    const SEED_DEFAULT: &str = r#"table inet bitmask {
	comment "X"
	set gateways4 {
		type ipv4_addr
		size 4
		elements = { 1.209.122.29, 5.79.86.180,
			     198.252.153.28, 199.58.81.145 }
	}

	chain output {
		type filter hook output priority filter; policy accept;
		oifname "lo" accept
		oifname "tun*" accept
		ip daddr @gateways4 accept
		udp dport 53 reject
		tcp dport 53 reject
		udp sport 68 udp dport 67 accept
		ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept
		ip6 hoplimit 255 icmpv6 type nd-router-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept
		ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept
		ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept
		oifname "eth0" ip daddr 192.168.1.0/24 accept
		oifname "eth0" ip6 daddr fe80::/64 accept
		ip daddr 239.255.255.250 udp dport 1900 accept
		ip daddr 224.0.0.251 udp dport 5353 accept
		ip6 daddr ff05::c udp dport 1900 accept
		ip6 daddr ff02::fb udp dport 5353 accept
		meta l4proto tcp reject with tcp reset
		reject
	}

	chain nat_output {
		type nat hook output priority -100; policy accept;
		ip daddr @gateways4 return
		oifname "lo" return
		meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53
		meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53
	}

	chain nat_postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 10.42.0.1 udp dport 53 masquerade
		ip daddr 10.42.0.1 tcp dport 53 masquerade
	}
}
"#;

    #[test]
    fn seed_network_renders_to_the_expected_nft_text() {
        let (net, gws) = seed();
        let policy = Policy::builder().gateways(gws).build().unwrap();
        let rs = plan(&policy, &net).unwrap();
        assert_eq!(super::render(&rs, "X"), SEED_DEFAULT);
    }

    /// Each rule of the seed's listing (iptables -S), as nftables writes it in --compat.
    #[test]
    fn compat_plan_holds_each_rule_of_the_seed_listing() {
        let (net, gws) = seed();
        let policy = Policy::builder()
            .gateways(gws)
            .profile(Profile::Compat)
            .debug(true)
            .build()
            .unwrap();
        let text = super::render(&plan(&policy, &net).unwrap(), "X");
        let seed_rules = [
            // -A bitmask -d 192.168.1.0/24 -o eth0 -j ACCEPT
            r#"oifname "eth0" ip daddr 192.168.1.0/24 accept"#,
            // -A bitmask -s 192.168.1.0/24 -o eth0 -p udp -m udp --dport 53 -j ACCEPT (and tcp)
            r#"oifname "eth0" ip saddr 192.168.1.0/24 udp dport 53 accept"#,
            r#"oifname "eth0" ip saddr 192.168.1.0/24 tcp dport 53 accept"#,
            // -A bitmask -d 239.255.255.250/32 -o eth0 -p udp -m udp --dport 1900 -j RETURN
            r#"oifname "eth0" ip daddr 239.255.255.250 udp dport 1900 return"#,
            r#"oifname "eth0" ip daddr 224.0.0.251 udp dport 5353 return"#,
            // -A bitmask -d GW -o eth0 -j ACCEPT, for each gateway
            r#"oifname "eth0" ip daddr 198.252.153.28 accept"#,
            r#"oifname "eth0" ip daddr 199.58.81.145 accept"#,
            r#"oifname "eth0" ip daddr 5.79.86.180 accept"#,
            r#"oifname "eth0" ip daddr 1.209.122.29 accept"#,
            // LOG --log-prefix "iptables denied: " --log-level 7
            r#"oifname "eth0" meta nfproto ipv4 log prefix "iptables denied: " level debug"#,
            // -A bitmask -o eth0 -j REJECT --reject-with icmp-port-unreachable (IPv4 only)
            r#"oifname "eth0" meta nfproto ipv4 reject"#,
            // ip6tables: -d fe80::/64 -o eth0 ACCEPT, SSDP/mDNS RETURN, tcp/udp REJECT
            r#"oifname "eth0" ip6 daddr fe80::/64 accept"#,
            r#"oifname "eth0" ip6 daddr ff05::c udp dport 1900 return"#,
            r#"oifname "eth0" ip6 daddr ff02::fb udp dport 5353 return"#,
            r#"meta nfproto ipv6 meta l4proto tcp reject"#,
            r#"meta nfproto ipv6 meta l4proto udp reject"#,
            // nat: gateways RETURN, local stubs ACCEPT (udp only), DNAT udp and tcp
            r#"ip daddr 199.58.81.145 return"#,
            r#"ip daddr 127.0.1.1 udp dport 53 accept"#,
            r#"ip daddr 127.0.0.1 udp dport 53 accept"#,
            r#"ip daddr 127.0.0.53 udp dport 53 accept"#,
            r#"meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53"#,
            r#"meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53"#,
            // nat postrouting: MASQUERADE udp and tcp to the resolver
            r#"ip daddr 10.42.0.1 udp dport 53 masquerade"#,
            r#"ip daddr 10.42.0.1 tcp dport 53 masquerade"#,
        ];
        for rule in seed_rules {
            assert!(
                text.lines().any(|l| l.trim() == rule),
                "the --compat plan lacks the seed's rule `{rule}`:\n{text}"
            );
        }
        let reject = text
            .lines()
            .position(|l| l.trim() == r#"oifname "eth0" meta nfproto ipv4 reject"#);
        let gw = text
            .lines()
            .position(|l| l.trim() == r#"oifname "eth0" ip daddr 199.58.81.145 accept"#);
        assert!(
            gw < reject,
            "gateways must come before the reject, as in the seed"
        );
    }

    /// The README shows the plan for a host whose only network is eth0 on 192.168.1.0/24;
    /// it must stay exactly what the code prints.
    #[test]
    fn the_readme_example_is_current() {
        let net = eth0_network(&[("192.168.1.10", 24)]);
        let policy = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        let text = crate::engine::render(&plan(&policy, &net).unwrap()).unwrap();
        assert!(
            include_str!("../README.md").contains(&text),
            "README.md's example plan is out of date; it should read:\n{text}"
        );
    }
}
