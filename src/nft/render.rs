//! Prints a [`Ruleset`] in nft syntax, the way `nft list table inet NAME` shows it.
//!
//! The text is what `--dry-run` prints and what the namespace tests compare with the kernel's
//! own listing, so it follows nft's layout: tabs, canonical priority names, dependencies such as
//! `meta l4proto udp` left implicit when `udp dport` implies them.

use std::fmt::{self, Write};

use crate::nft::ruleset::{
    Action, Chain, ChainKind, Family, Hook, Match, Rule, Ruleset, IPPROTO_ICMPV6,
};

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
fn elements_text(set: &crate::nft::ruleset::Set) -> String {
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
        Hook::Prerouting => "prerouting",
        Hook::Forward => "forward",
    };
    writeln!(
        s,
        "\t\ttype {kind} hook {hook} priority {}; policy accept;",
        priority_name(c.kind, c.hook, c.priority)
    )?;
    for r in &c.rules {
        writeln!(s, "\t\t{}", rule_listing(r))?;
    }
    writeln!(s, "\t}}")
}

/// nft's names for standard priorities in the inet family.
fn priority_name(kind: ChainKind, hook: Hook, prio: i32) -> String {
    match (kind, hook, prio) {
        (ChainKind::Filter, _, 0) => "filter".into(),
        (ChainKind::Nat, Hook::Postrouting | Hook::Input, 100) => "srcnat".into(),
        (ChainKind::Nat, Hook::Prerouting, -100) => "dstnat".into(),
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

/// One rule in nft syntax, as `nft add rule` takes it (a counter is written `counter`).
pub fn rule_text(r: &Rule) -> String {
    rule_with_counter(r, "counter")
}

/// One rule as `nft list table` shows it in a fresh table (`counter packets 0 bytes 0`).
fn rule_listing(r: &Rule) -> String {
    rule_with_counter(r, "counter packets 0 bytes 0")
}

fn rule_with_counter(r: &Rule, counter: &str) -> String {
    let mut parts: Vec<String> = r.matches.iter().map(match_text).collect();
    if r.counter {
        parts.push(counter.to_string());
    }
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
        Match::CtStatusDnat => "ct status dnat".into(),
        Match::DaddrLocal => "fib daddr type local".into(),
        Match::CtDirectionReply => "ct direction reply".into(),
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

fn family_of(p: &crate::nft::ruleset::Prefix) -> Family {
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
        Action::Drop => "drop".into(),
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
