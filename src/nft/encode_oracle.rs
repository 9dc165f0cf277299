//! The encoder this crate used before it wrote its own batches: the same rulesets through
//! libnftnl (the `nftnl` crate), kept only so that a test can check that [`super::encode`]
//! writes the messages libnftnl writes. Never built outside tests. The code is the old
//! encoder as it was (its labels and objects-only mode included, unused here).
#![allow(dead_code)]

use std::ffi::{CString, NulError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, ConntrackStatus, IcmpCode, Icmpv6HeaderField, Immediate,
    InterfaceName, Ipv4HeaderField, Ipv6HeaderField, Lookup, Masquerade, Meta, Nat, NatType,
    NetworkHeaderField, Payload, Register, RejectionType, TcpHeaderField, TransportHeaderField,
    UdpHeaderField, Verdict,
};
use nftnl::set::{Set as NftSet, SetKey};
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily};

use crate::nft::ruleset::{Action, ChainKind, Family, Hook, IfPattern, Match, Ruleset, L4};
use crate::sys::nftnl_oracle as sys;

/// Why the old encoder failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A NUL byte in a name.
    #[error("{0}")]
    Name(#[from] NulError),
    /// An unknown set.
    #[error("unknown set {0}")]
    UnknownSet(String),
}

/// An encoded batch and, per object message, what it builds (for error messages).
pub struct Encoded {
    /// The finalized batch.
    pub batch: FinalizedBatch,
    /// Labels of the object messages in order.
    pub labels: Vec<String>,
}

impl Encoded {
    /// The batch as one buffer (all pages concatenated).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for page in &self.batch {
            v.extend_from_slice(page);
        }
        v
    }
}

/// What kind of batch to build.
enum Mode<'a> {
    /// The objects only, with a plain table and no set elements: the input of the
    /// fingerprint, never sent.
    Objects,
    /// `table add, table delete, table add (with comment), contents`: replaces whatever is
    /// there, or nothing.
    Replace(&'a str, u32),
    /// `table create (exclusive, with comment), contents`: only when the table is absent. The
    /// kernel refuses it with EEXIST if the table appeared meanwhile. Without a delete in the
    /// transaction the kernel need not wait for readers of the old table (an RCU grace
    /// period, about 15 ms), so a fresh start is several times faster.
    Create(&'a str, u32),
}

/// Encodes the replacement batch for `rs`, with `comment` on the table.
pub fn encode_replace(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Replace(comment, 0))
}

/// Like [`encode_replace`], the new table created with `flags`.
pub fn encode_replace_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: u32,
) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Replace(comment, flags))
}

/// Like [`encode_create`], the table created with `flags`.
pub fn encode_create_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: u32,
) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Create(comment, flags))
}

/// One `table add` of `inet NAME` with `flags` and nothing else.
pub fn encode_adopt(name: &str, flags: u32) -> Result<Encoded, TransportError> {
    let cname = CString::new(name)?;
    let msg = sys::CommentedTable::with_flags(&cname, None, false, Some(flags));
    let mut batch = Batch::new();
    batch.add(&msg, MsgType::Add);
    Ok(Encoded {
        batch: batch.finalize(),
        labels: vec![format!("table inet {name} (taking ownership)")],
    })
}

/// Encodes a batch that creates table `rs.table`, with `comment`, and fails with EEXIST if
/// it exists.
pub fn encode_create(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Create(comment, 0))
}

/// Encodes only the objects (no table replacement, no set elements): the input of the
/// fingerprint. Never sent.
pub fn encode_objects(rs: &Ruleset) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Objects)
}

/// Encodes the removal of table `name` (add + delete: never fails because it is absent).
pub fn encode_remove(name: &str) -> Result<Encoded, TransportError> {
    let cname = CString::new(name)?;
    let table = nftnl::Table::new(&cname, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&sys::CommentedTable::bare(&cname), MsgType::Add);
    batch.add(&table, MsgType::Del);
    Ok(Encoded {
        batch: batch.finalize(),
        labels: vec![
            format!("table inet {name}"),
            format!("removing table inet {name}"),
        ],
    })
}

fn encode(rs: &Ruleset, mode: Mode<'_>) -> Result<Encoded, TransportError> {
    let tname = CString::new(rs.table.as_str())?;
    let table = nftnl::Table::new(&tname, ProtoFamily::Inet);
    let mut batch = Batch::new();
    let mut labels = Vec::new();
    if let Mode::Replace(..) = mode {
        batch.add(&sys::CommentedTable::bare(&tname), MsgType::Add);
        labels.push(format!("table inet {}", rs.table));
        batch.add(&table, MsgType::Del);
        labels.push(format!("replacing table inet {}", rs.table));
    }
    match mode {
        Mode::Objects => batch.add(&table, MsgType::Add),
        Mode::Replace(c, flags) | Mode::Create(c, flags) => {
            let comment = CString::new(c)?;
            let exclusive = matches!(mode, Mode::Create(..));
            let msg =
                sys::CommentedTable::with_flags(&tname, Some(&comment), exclusive, Some(flags));
            batch.add(&msg, MsgType::Add)
        }
    }
    labels.push(format!("table inet {}", rs.table));
    let replace = !matches!(mode, Mode::Objects);

    let mut sets4: Vec<NftSet<'_, Ipv4Addr>> = Vec::new();
    let mut sets6: Vec<NftSet<'_, Ipv6Addr>> = Vec::new();
    for (i, set) in rs.sets.iter().enumerate() {
        let name = CString::new(set.name.as_str())?;
        let id = i as u32 + 1;
        let size = u32::try_from(set.elements.len()).unwrap_or(u32::MAX);
        // The objects-only encoding (for the fingerprint) leaves the elements out.
        let elements = set.elements.iter().filter(|_| replace);
        match set.family {
            Family::V4 => sets4.push(named_set(
                &table,
                &name,
                id,
                size,
                elements.filter_map(|e| match e {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                }),
            )),
            Family::V6 => sets6.push(named_set(
                &table,
                &name,
                id,
                size,
                elements.filter_map(|e| match e {
                    IpAddr::V6(a) => Some(*a),
                    IpAddr::V4(_) => None,
                }),
            )),
        }
    }
    for s in &sets4 {
        add_set(&mut batch, &mut labels, s);
    }
    for s in &sets6 {
        add_set(&mut batch, &mut labels, s);
    }

    let mut chains = Vec::new();
    for c in &rs.chains {
        let mut chain = nftnl::Chain::new(CString::new(c.name.as_str())?, &table);
        chain.set_hook(
            match c.hook {
                Hook::Input => nftnl::Hook::In,
                Hook::Output => nftnl::Hook::Out,
                Hook::Postrouting => nftnl::Hook::PostRouting,
                Hook::Prerouting => nftnl::Hook::PreRouting,
                Hook::Forward => nftnl::Hook::Forward,
            },
            c.priority,
        );
        chain.set_type(match c.kind {
            ChainKind::Filter => nftnl::ChainType::Filter,
            ChainKind::Nat => nftnl::ChainType::Nat,
        });
        chain.set_policy(nftnl::Policy::Accept);
        batch.add(&chain, MsgType::Add);
        labels.push(format!("chain {}", c.name));
        chains.push(chain);
    }
    for (c, chain) in rs.chains.iter().zip(&chains) {
        for (n, r) in c.rules.iter().enumerate() {
            let mut rule = nftnl::Rule::new(chain);
            encode_rule(&mut rule, &r.matches, r.counter, &r.action, &sets4, &sets6)?;
            batch.add(&rule, MsgType::Add);
            labels.push(format!("rule {} of chain {} ({})", n + 1, c.name, ""));
        }
    }
    Ok(Encoded {
        batch: batch.finalize(),
        labels,
    })
}

/// A named set of `table` declared to hold `size` elements, holding `elements`.
fn named_set<'a, K: SetKey>(
    table: &'a nftnl::Table,
    name: &CString,
    id: u32,
    size: u32,
    elements: impl Iterator<Item = K>,
) -> NftSet<'a, K> {
    let mut set = NftSet::new_named(name, id, table, ProtoFamily::Inet);
    sys::set_size(&set, size);
    for e in elements {
        set.add(&e);
    }
    set
}

/// Adds a set and its element messages to the batch.
fn add_set<K>(batch: &mut Batch, labels: &mut Vec<String>, set: &NftSet<'_, K>) {
    let name = set.get_name().to_string_lossy().into_owned();
    batch.add(set, MsgType::Add);
    labels.push(format!("set {name}"));
    for m in set.elems_iter() {
        batch.add(&m, MsgType::Add);
        labels.push(format!("elements of set {name}"));
    }
}

/// A rule that names a set the ruleset does not declare is a bug in the plan; refusing it keeps
/// the rule from degenerating into "any address".
fn unknown_set(name: &str) -> TransportError {
    TransportError::UnknownSet(name.to_string())
}

fn ifname(p: &IfPattern) -> Result<InterfaceName, NulError> {
    let stem = CString::new(p.stem())?;
    Ok(if p.is_wildcard() {
        InterfaceName::StartingWith(stem)
    } else {
        InterfaceName::Exact(stem)
    })
}

fn nfproto_value(f: Family) -> u8 {
    match f {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

/// Adds the expressions of one rule. Dependencies (`meta nfproto`, `meta l4proto`) are added
/// once per rule, before the first payload load that needs them, as nft itself does.
fn encode_rule(
    rule: &mut nftnl::Rule<'_>,
    matches: &[Match],
    counter: bool,
    action: &Action,
    sets4: &[NftSet<'_, Ipv4Addr>],
    sets6: &[NftSet<'_, Ipv6Addr>],
) -> Result<(), TransportError> {
    let mut nfproto: Option<Family> = None;
    let mut l4: Option<u8> = None;
    let need_nfproto = |rule: &mut nftnl::Rule<'_>, nfproto: &mut Option<Family>, f: Family| {
        if *nfproto != Some(f) {
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, nfproto_value(f)));
            *nfproto = Some(f);
        }
    };
    let need_l4 = |rule: &mut nftnl::Rule<'_>, l4: &mut Option<u8>, p: u8| {
        if *l4 != Some(p) {
            rule.add_expr(&Meta::L4Proto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, p));
            *l4 = Some(p);
        }
    };
    for m in matches {
        match m {
            Match::Oif(p) => {
                rule.add_expr(&Meta::OifName);
                rule.add_expr(&Cmp::new(CmpOp::Eq, ifname(p)?));
            }
            Match::Iif(p) => {
                rule.add_expr(&Meta::IifName);
                rule.add_expr(&Cmp::new(CmpOp::Eq, ifname(p)?));
            }
            Match::Nfproto(f) => need_nfproto(rule, &mut nfproto, *f),
            Match::L4proto(p) => need_l4(rule, &mut l4, *p),
            Match::Daddr(p) | Match::Saddr(p) => {
                let dst = matches!(m, Match::Daddr(_));
                let field = match (p.addr(), dst) {
                    (IpAddr::V4(_), true) => NetworkHeaderField::Ipv4(Ipv4HeaderField::Daddr),
                    (IpAddr::V4(_), false) => NetworkHeaderField::Ipv4(Ipv4HeaderField::Saddr),
                    (IpAddr::V6(_), true) => NetworkHeaderField::Ipv6(Ipv6HeaderField::Daddr),
                    (IpAddr::V6(_), false) => NetworkHeaderField::Ipv6(Ipv6HeaderField::Saddr),
                };
                let fam = if p.addr().is_ipv4() {
                    Family::V4
                } else {
                    Family::V6
                };
                need_nfproto(rule, &mut nfproto, fam);
                rule.add_expr(&Payload::Network(field));
                if !p.is_host() {
                    let mask = p.mask_bytes();
                    let zero = vec![0u8; mask.len()];
                    rule.add_expr(&Bitwise::new(&mask[..], &zero[..]));
                }
                rule.add_expr(&Cmp::new(CmpOp::Eq, p.addr()));
            }
            Match::DaddrIn(name, fam) => {
                need_nfproto(rule, &mut nfproto, *fam);
                match fam {
                    Family::V4 => {
                        rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv4(
                            Ipv4HeaderField::Daddr,
                        )));
                        let set = sets4
                            .iter()
                            .find(|s| s.get_name().to_bytes() == name.as_bytes());
                        rule.add_expr(&Lookup::new(set.ok_or_else(|| unknown_set(name))?));
                    }
                    Family::V6 => {
                        rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv6(
                            Ipv6HeaderField::Daddr,
                        )));
                        let set = sets6
                            .iter()
                            .find(|s| s.get_name().to_bytes() == name.as_bytes());
                        rule.add_expr(&Lookup::new(set.ok_or_else(|| unknown_set(name))?));
                    }
                }
            }
            Match::Dport(proto, port) | Match::Sport(proto, port) => {
                let dst = matches!(m, Match::Dport(..));
                need_l4(rule, &mut l4, proto.number());
                let field = match (proto, dst) {
                    (L4::Tcp, true) => TransportHeaderField::Tcp(TcpHeaderField::Dport),
                    (L4::Tcp, false) => TransportHeaderField::Tcp(TcpHeaderField::Sport),
                    (L4::Udp, true) => TransportHeaderField::Udp(UdpHeaderField::Dport),
                    (L4::Udp, false) => TransportHeaderField::Udp(UdpHeaderField::Sport),
                };
                rule.add_expr(&Payload::Transport(field));
                rule.add_expr(&Cmp::new(CmpOp::Eq, port.to_be()));
            }
            Match::HopLimit(h) => {
                need_nfproto(rule, &mut nfproto, Family::V6);
                rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv6(
                    Ipv6HeaderField::HopLimit,
                )));
                rule.add_expr(&Cmp::new(CmpOp::Eq, *h));
            }
            Match::Icmpv6Type(t) => {
                need_l4(rule, &mut l4, crate::nft::ruleset::IPPROTO_ICMPV6);
                rule.add_expr(&Payload::Transport(TransportHeaderField::Icmpv6(
                    Icmpv6HeaderField::Type,
                )));
                rule.add_expr(&Cmp::new(CmpOp::Eq, *t));
            }
            Match::SkUid(uid) => {
                rule.add_expr(&Meta::SkUid);
                rule.add_expr(&Cmp::new(CmpOp::Eq, *uid));
            }
            Match::CtStatusDnat => {
                rule.add_expr(&Conntrack::Status);
                rule.add_expr(&Bitwise::new(ConntrackStatus::DST_NAT.bits(), 0u32));
                rule.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
            }
            Match::DaddrLocal => {
                rule.add_expr(&sys::FibDaddrType);
                rule.add_expr(&Cmp::new(CmpOp::Eq, u32::from(libc::RTN_LOCAL)));
            }
            Match::CtDirectionReply => {
                rule.add_expr(&sys::CtDirection);
                rule.add_expr(&Cmp::new(CmpOp::Eq, 1u8));
            }
        }
    }
    if counter {
        rule.add_expr(&nftnl::expr::Counter);
    }
    match action {
        Action::Accept => rule.add_expr(&Verdict::Accept),
        Action::Return => rule.add_expr(&Verdict::Return),
        Action::Reject => {
            rule.add_expr(&Verdict::Reject(RejectionType::Icmp(IcmpCode::PortUnreach)))
        }
        Action::RejectTcpReset => rule.add_expr(&Verdict::Reject(RejectionType::TcpRst)),
        Action::Drop => rule.add_expr(&Verdict::Drop),
        Action::Log { prefix, level } => rule.add_expr(&sys::Log {
            prefix: CString::new(prefix.as_str())?,
            level: *level,
        }),
        Action::Dnat(addr, port) => {
            rule.add_expr(&Immediate::new(addr.octets(), Register::Reg1));
            rule.add_expr(&Immediate::new(port.to_be(), Register::Reg2));
            rule.add_expr(&Nat {
                nat_type: NatType::DNat,
                family: ProtoFamily::Ipv4,
                ip_register: Register::Reg1,
                port_register: Some(Register::Reg2),
            });
        }
        Action::Masquerade => rule.add_expr(&Masquerade),
    }
    Ok(())
}
