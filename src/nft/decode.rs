//! A table read back from the kernel as a [`Ruleset`], with the counters of its rules.
//!
//! The decoder reads the expressions that [`crate::nft::transport`] writes (and the kernel
//! dumps back) and rebuilds the rules: a load (`meta`, `payload`), an optional mask
//! (`bitwise`), a comparison (`cmp`) or a set `lookup` become one [`Match`]; `meta nfproto` and
//! `meta l4proto` comparisons that only guard the next load are left implicit, as nft prints
//! them. It is lenient on purpose: [`read_running`] encodes the decoded ruleset again and
//! accepts it only when its canonical snapshot equals the kernel's, so what it returns is
//! exactly what the kernel runs, or an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::nft::netlink::{self, Attr};
use crate::nft::readback::{self, KernelTable};
use crate::nft::ruleset::{
    Action, Chain, ChainKind, Family, Hook, IfPattern, Match, Prefix, Rule, Ruleset, Set, L4,
};
use crate::nft::transport::{self, TransportError};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NFPROTO_INET: u8 = 1;

/// The packets and bytes one rule's `counter` counted since the table was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The counters of a table's counted rules, by chain name and rule position (from 0).
pub type Counters = BTreeMap<(String, usize), Counter>;

/// A table as it runs in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its rules, decoded; `record` holds the table comment.
    pub ruleset: Ruleset,
    /// What the read-back saw (comment, canonical snapshot, set elements).
    pub kernel: KernelTable,
    /// The counters of counted rules.
    pub counters: Counters,
}

/// Why a running table could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The kernel could not be read.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A rule holds something bitmask-root never writes.
    #[error("rule {index} of chain {chain} is not one bitmask-root writes ({what}): another program changed the table; run firewall start again to restore it")]
    Foreign {
        /// The chain.
        chain: String,
        /// The rule's position, from 1.
        index: usize,
        /// What was not understood.
        what: String,
    },
    /// A chain is hooked or typed in a way bitmask-root never writes.
    #[error("chain {0} is not one bitmask-root writes: another program changed the table; run firewall start again to restore it")]
    ForeignChain(String),
    /// The decoded rules do not encode back to what the kernel holds.
    #[error("the table reads back differently from its decoded rules ({0}); it may have been changed while it was read: run the command again, or firewall start to restore it")]
    Mismatch(String),
}

/// What a register holds while a rule is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Meta(u32),
    /// A conntrack load (`ct KEY`).
    Ct(u32),
    /// A route lookup (`fib`): its result kind and flags.
    Fib {
        result: u32,
        flags: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Masked(Box<Source>, Vec<u8>),
    Value(Vec<u8>),
}

const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_SKUID: u32 = 10;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const BASE_NETWORK: u32 = 1;
/// `NFT_CT_DIRECTION`: the packet's direction in its connection (one byte).
const CT_DIRECTION: u32 = 1;
/// `NFT_CT_STATUS`: the connection's status bits (`IPS_*`, 32 bits in host order).
const CT_STATUS: u32 = 2;
/// `IPS_DST_NAT`: the connection's destination was rewritten.
const IPS_DST_NAT: u32 = 1 << 5;
/// `IP_CT_DIR_REPLY`.
const CT_DIR_REPLY: u8 = 1;
/// `NFT_FIB_RESULT_ADDRTYPE`: the route type of the address looked up.
const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `NFTA_FIB_F_DADDR`: look up the destination address (and no interface restriction).
const FIB_F_DADDR: u32 = 1 << 1;
/// `NFT_CMP_EQ` and `NFT_CMP_NEQ`.
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const BASE_TRANSPORT: u32 = 2;

fn be32(a: Option<Attr<'_>>) -> Option<u32> {
    a.and_then(|a| a.be_u32())
}

/// The bytes of a nested `NFTA_DATA_VALUE`.
fn data_value(a: Option<Attr<'_>>) -> Option<Vec<u8>> {
    let nested = a?.nested();
    netlink::find(&nested, 1).map(|v| v.data.to_vec())
}

fn prefix_len(mask: &[u8]) -> Option<u8> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .skip_while(|bit| *bit == 1)
        .all(|bit| bit == 0);
    contiguous.then_some(ones as u8)
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The network-header field a payload load reads, as (is destination, family) or hop limit.
enum NetField {
    Addr { dst: bool, family: Family },
    HopLimit,
}

fn net_field(offset: u32, len: u32) -> Option<NetField> {
    match (offset, len) {
        (12, 4) => Some(NetField::Addr {
            dst: false,
            family: Family::V4,
        }),
        (16, 4) => Some(NetField::Addr {
            dst: true,
            family: Family::V4,
        }),
        (8, 16) => Some(NetField::Addr {
            dst: false,
            family: Family::V6,
        }),
        (24, 16) => Some(NetField::Addr {
            dst: true,
            family: Family::V6,
        }),
        (7, 1) => Some(NetField::HopLimit),
        _ => None,
    }
}

fn family_value(v: u8) -> Option<Family> {
    match i32::from(v) {
        libc::NFPROTO_IPV4 => Some(Family::V4),
        libc::NFPROTO_IPV6 => Some(Family::V6),
        _ => None,
    }
}

fn l4_of(p: Option<u8>) -> Option<L4> {
    match p {
        Some(6) => Some(L4::Tcp),
        Some(17) => Some(L4::Udp),
        _ => None,
    }
}

/// Decodes one rule's expressions (the `NFTA_RULE_EXPRESSIONS` attribute data).
fn decode_rule(data: &[u8]) -> Result<(Rule, Option<Counter>), String> {
    let exprs: Vec<(String, Vec<Attr<'_>>)> = netlink::attrs(data)
        .iter()
        .map(|e| {
            let parts = e.nested();
            let name = netlink::find(&parts, 1)
                .and_then(|a| a.str())
                .unwrap_or("?")
                .to_string();
            let body = netlink::find(&parts, 2)
                .map(|d| d.nested())
                .unwrap_or_default();
            (name, body)
        })
        .collect();
    let mut regs: BTreeMap<u32, Source> = BTreeMap::new();
    let mut matches = Vec::new();
    let mut action = None;
    let mut counter = None;
    let mut l4: Option<u8> = None;
    // A `meta nfproto`/`meta l4proto` comparison waiting to see whether the next load needs it.
    let mut pending: Option<Match> = None;
    for (name, a) in &exprs {
        let is_dependency_of = |src: &Source, pending: &Option<Match>| match (src, pending) {
            (Source::Payload { base, offset, len }, Some(Match::Nfproto(f))) => {
                *base == BASE_NETWORK
                    && match net_field(*offset, *len) {
                        Some(NetField::Addr { family, .. }) => family == *f,
                        Some(NetField::HopLimit) => *f == Family::V6,
                        None => false,
                    }
            }
            (Source::Payload { base, .. }, Some(Match::L4proto(_))) => *base == BASE_TRANSPORT,
            _ => false,
        };
        match name.as_str() {
            "meta" | "payload" | "ct" | "fib" => {
                let dreg = be32(netlink::find(a, 1)).ok_or("a load without a register")?;
                let src = match name.as_str() {
                    "meta" => Source::Meta(be32(netlink::find(a, 2)).ok_or("meta without a key")?),
                    "ct" => {
                        // NFTA_CT_DIRECTION (3) asks for one direction's tuple: never ours.
                        if netlink::find(a, 3).is_some() {
                            return Err("a ct load of one direction's tuple".into());
                        }
                        Source::Ct(be32(netlink::find(a, 2)).ok_or("ct without a key")?)
                    }
                    "fib" => Source::Fib {
                        result: be32(netlink::find(a, 2)).ok_or("fib without a result")?,
                        flags: be32(netlink::find(a, 3)).ok_or("fib without flags")?,
                    },
                    _ => Source::Payload {
                        base: be32(netlink::find(a, 2)).ok_or("payload without a base")?,
                        offset: be32(netlink::find(a, 3)).ok_or("payload without offset")?,
                        len: be32(netlink::find(a, 4)).ok_or("payload without length")?,
                    },
                };
                if is_dependency_of(&src, &pending) {
                    pending = None;
                } else if let Some(m) = pending.take() {
                    matches.push(m);
                }
                regs.insert(dreg, src);
            }
            "bitwise" => {
                let sreg = be32(netlink::find(a, 1)).ok_or("bitwise without a source")?;
                let dreg = be32(netlink::find(a, 2)).ok_or("bitwise without a register")?;
                let mask = data_value(netlink::find(a, 4)).ok_or("bitwise without a mask")?;
                let xor = data_value(netlink::find(a, 5)).unwrap_or_default();
                if xor.iter().any(|b| *b != 0) {
                    return Err("a bitwise xor".into());
                }
                let src = regs
                    .get(&sreg)
                    .cloned()
                    .ok_or("bitwise of an empty register")?;
                regs.insert(dreg, Source::Masked(Box::new(src), mask));
            }
            "cmp" => {
                let sreg = be32(netlink::find(a, 1)).ok_or("cmp without a register")?;
                let op = be32(netlink::find(a, 2)).ok_or("cmp without an operator")?;
                let value = data_value(netlink::find(a, 3)).ok_or("cmp without data")?;
                let src = regs.get(&sreg).cloned().ok_or("cmp of an empty register")?;
                if let Some(m) = pending.take() {
                    matches.push(m);
                }
                if op != CMP_EQ {
                    // The only other comparison written: `ct status dnat` (bit set: != 0).
                    let zero = value.iter().all(|b| *b == 0);
                    match (&src, op) {
                        (Source::Masked(inner, mask), CMP_NEQ)
                            if **inner == Source::Ct(CT_STATUS)
                                && zero
                                && mask[..] == IPS_DST_NAT.to_ne_bytes() =>
                        {
                            matches.push(Match::CtStatusDnat);
                            continue;
                        }
                        _ => return Err(format!("a comparison (operator {op}) of {src:?}")),
                    }
                }
                let byte = value.first().copied();
                let m = match src {
                    Source::Meta(META_NFPROTO) => {
                        let f = byte.and_then(family_value).ok_or("unknown nfproto")?;
                        pending = Some(Match::Nfproto(f));
                        continue;
                    }
                    Source::Meta(META_L4PROTO) => {
                        let p = byte.ok_or("empty l4proto")?;
                        l4 = Some(p);
                        pending = Some(Match::L4proto(p));
                        continue;
                    }
                    Source::Meta(key @ (META_OIFNAME | META_IIFNAME)) => {
                        let (stem, wildcard) = match value.strip_suffix(&[0]) {
                            Some(exact) => (exact, false),
                            None => (&value[..], true),
                        };
                        let stem = std::str::from_utf8(stem).map_err(|_| "interface name")?;
                        let p = IfPattern::from_parts(stem, wildcard);
                        if key == META_OIFNAME {
                            Match::Oif(p)
                        } else {
                            Match::Iif(p)
                        }
                    }
                    Source::Ct(CT_DIRECTION) if value == [CT_DIR_REPLY] => Match::CtDirectionReply,
                    Source::Fib {
                        result: FIB_RESULT_ADDRTYPE,
                        flags: FIB_F_DADDR,
                    } if value == u32::from(libc::RTN_LOCAL).to_ne_bytes() => Match::DaddrLocal,
                    Source::Meta(META_SKUID) => {
                        let b: [u8; 4] = value[..].try_into().map_err(|_| "skuid length")?;
                        Match::SkUid(u32::from_ne_bytes(b))
                    }
                    Source::Payload {
                        base: BASE_NETWORK,
                        offset,
                        len,
                    } => match net_field(offset, len) {
                        Some(NetField::Addr { dst, .. }) => {
                            let addr = ip_of(&value).ok_or("address length")?;
                            let p = Prefix::new(addr, if addr.is_ipv4() { 32 } else { 128 });
                            if dst {
                                Match::Daddr(p)
                            } else {
                                Match::Saddr(p)
                            }
                        }
                        Some(NetField::HopLimit) => Match::HopLimit(byte.ok_or("hop limit")?),
                        None => return Err(format!("a network header load at {offset}")),
                    },
                    Source::Payload {
                        base: BASE_TRANSPORT,
                        offset,
                        len,
                    } => match (l4, offset, len) {
                        (Some(crate::nft::ruleset::IPPROTO_ICMPV6), 0, 1) => {
                            Match::Icmpv6Type(byte.ok_or("icmpv6 type")?)
                        }
                        (p, 0 | 2, 2) => {
                            let proto = l4_of(p).ok_or("a port without tcp or udp")?;
                            let port = u16::from_be_bytes(
                                value[..].try_into().map_err(|_| "port length")?,
                            );
                            if offset == 2 {
                                Match::Dport(proto, port)
                            } else {
                                Match::Sport(proto, port)
                            }
                        }
                        _ => return Err(format!("a transport header load at {offset}")),
                    },
                    Source::Masked(inner, mask) => match *inner {
                        Source::Payload {
                            base: BASE_NETWORK,
                            offset,
                            len,
                        } => match net_field(offset, len) {
                            Some(NetField::Addr { dst, .. }) => {
                                let addr = ip_of(&value).ok_or("address length")?;
                                let plen = prefix_len(&mask).ok_or("a mask that is no prefix")?;
                                let p = Prefix::new(addr, plen);
                                if dst {
                                    Match::Daddr(p)
                                } else {
                                    Match::Saddr(p)
                                }
                            }
                            _ => return Err("a masked header field".into()),
                        },
                        _ => return Err("a masked load".into()),
                    },
                    other => return Err(format!("a comparison of {other:?}")),
                };
                matches.push(m);
            }
            "lookup" => {
                let set = netlink::find(a, 1)
                    .and_then(|s| s.str())
                    .ok_or("lookup without a set")?
                    .to_string();
                let sreg = be32(netlink::find(a, 2)).ok_or("lookup without a register")?;
                if be32(netlink::find(a, 5)) == Some(1) {
                    return Err("an inverted lookup".into());
                }
                let family = match regs.get(&sreg) {
                    Some(Source::Payload {
                        base: BASE_NETWORK,
                        offset,
                        len,
                    }) => match net_field(*offset, *len) {
                        Some(NetField::Addr { dst: true, family }) => family,
                        _ => return Err("a lookup of another field".into()),
                    },
                    _ => return Err("a lookup of another field".into()),
                };
                if let Some(m) = pending.take() {
                    matches.push(m);
                }
                matches.push(Match::DaddrIn(set, family));
            }
            "immediate" => {
                let dreg = be32(netlink::find(a, 1)).ok_or("immediate without a register")?;
                let data = netlink::find(a, 2)
                    .ok_or("immediate without data")?
                    .nested();
                if dreg == 0 {
                    let verdict = netlink::find(&data, 2).ok_or("a verdict without a code")?;
                    let code = be32(netlink::find(&verdict.nested(), 1)).ok_or("verdict code")?;
                    action = Some(match code as i32 {
                        0 => Action::Drop,
                        1 => Action::Accept,
                        -5 => Action::Return,
                        other => return Err(format!("verdict {other}")),
                    });
                } else {
                    let v = netlink::find(&data, 1)
                        .ok_or("immediate value")?
                        .data
                        .to_vec();
                    regs.insert(dreg, Source::Value(v));
                }
            }
            "counter" => {
                let read = |ty| {
                    netlink::find(a, ty)
                        .and_then(|v| <[u8; 8]>::try_from(v.data).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0)
                };
                counter = Some(Counter {
                    bytes: read(1),
                    packets: read(2),
                });
            }
            "reject" => {
                action = Some(match be32(netlink::find(a, 1)) {
                    Some(1) => Action::RejectTcpReset,
                    _ => Action::Reject,
                });
            }
            "log" => {
                let prefix = netlink::find(a, 2)
                    .and_then(|p| p.str())
                    .unwrap_or_default()
                    .to_string();
                let level = be32(netlink::find(a, 5)).unwrap_or(4);
                action = Some(Action::Log { prefix, level });
            }
            "nat" => {
                if be32(netlink::find(a, 1)) != Some(1) {
                    return Err("a source nat".into());
                }
                let reg = |ty| be32(netlink::find(a, ty)).and_then(|r| regs.get(&r));
                let addr = match reg(3) {
                    Some(Source::Value(v)) => <[u8; 4]>::try_from(&v[..])
                        .map(Ipv4Addr::from)
                        .map_err(|_| "dnat to a non-IPv4 address")?,
                    _ => return Err("dnat without an address".into()),
                };
                let port = match reg(5) {
                    Some(Source::Value(v)) => {
                        u16::from_be_bytes(<[u8; 2]>::try_from(&v[..]).map_err(|_| "port")?)
                    }
                    _ => return Err("dnat without a port".into()),
                };
                action = Some(Action::Dnat(addr, port));
            }
            "masq" => action = Some(Action::Masquerade),
            other => return Err(format!("a {other} expression")),
        }
    }
    if let Some(m) = pending.take() {
        matches.push(m);
    }
    let action = action.ok_or("a rule without a verdict")?;
    let mut rule = Rule::new(matches, action);
    rule.counter = counter.is_some();
    Ok((rule, counter))
}

/// The kernel's number of a hook (`NF_INET_*`).
fn hook_number(hook: Hook) -> u32 {
    match hook {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}

fn hook_of(num: u32) -> Option<Hook> {
    [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ]
    .into_iter()
    .find(|h| hook_number(*h) == num)
}

fn dump(name: &str, msg: u16, what: &'static str) -> Result<Vec<Vec<u8>>, TransportError> {
    let cname = netlink::cstr(name);
    let req = netlink::nft_request(
        msg,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        NFPROTO_INET,
        &[(1, &cname)],
    );
    transport::dump(&req, what)
}

/// Decodes chain and rule messages of table `name` (dumps, or an encoded batch) and the set
/// elements read back into a ruleset and the rules' counters.
pub fn decode(
    name: &str,
    messages: &[netlink::Message<'_>],
    set_elements: &BTreeMap<String, Vec<IpAddr>>,
) -> Result<(Ruleset, Counters), DecodeError> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut sets: Vec<Set> = Vec::new();
    let mut counters = BTreeMap::new();
    for msg in messages {
        let a = msg.nft_attrs();
        if netlink::find(&a, 1).and_then(|t| t.str()) != Some(name) {
            continue;
        }
        let text = |ty| {
            netlink::find(&a, ty)
                .and_then(|x| x.str())
                .unwrap_or_default()
                .to_string()
        };
        match msg.nft_type() {
            Some(netlink::NFT_MSG_NEWCHAIN) => {
                let cname = text(3);
                let hook = netlink::find(&a, 4).map(|h| h.nested()).unwrap_or_default();
                let num = be32(netlink::find(&hook, 1));
                let prio = be32(netlink::find(&hook, 2)).map(|p| p as i32);
                let kind = match text(7).as_str() {
                    "filter" => Some(ChainKind::Filter),
                    "nat" => Some(ChainKind::Nat),
                    _ => None,
                };
                let (Some(hook), Some(priority), Some(kind)) = (num.and_then(hook_of), prio, kind)
                else {
                    return Err(DecodeError::ForeignChain(cname));
                };
                chains.push(Chain {
                    name: cname,
                    hook,
                    kind,
                    priority,
                    rules: Vec::new(),
                });
            }
            Some(netlink::NFT_MSG_NEWRULE) => {
                let cname = text(2);
                let Some(chain) = chains.iter_mut().find(|c| c.name == cname) else {
                    return Err(DecodeError::ForeignChain(cname));
                };
                let index = chain.rules.len();
                let exprs = netlink::find(&a, 4).map(|e| e.data).unwrap_or_default();
                let (rule, counter) = decode_rule(exprs).map_err(|what| DecodeError::Foreign {
                    chain: cname.clone(),
                    index: index + 1,
                    what,
                })?;
                if let Some(c) = counter {
                    counters.insert((cname, index), c);
                }
                chain.rules.push(rule);
            }
            Some(netlink::NFT_MSG_NEWSET) => {
                let sname = text(2);
                let family = match be32(netlink::find(&a, 5)) {
                    Some(4) => Family::V4,
                    Some(16) => Family::V6,
                    _ => return Err(DecodeError::ForeignChain(format!("set {sname}"))),
                };
                let elements = set_elements.get(&sname).cloned().unwrap_or_default();
                sets.push(Set {
                    name: sname,
                    family,
                    elements,
                });
            }
            _ => {}
        }
    }
    Ok((
        Ruleset {
            table: name.to_string(),
            record: String::new(),
            sets,
            chains,
            set_ip_forward: false,
        },
        counters,
    ))
}

/// Reads table `inet NAME` of the calling thread's namespace and decodes it; `None` when it
/// does not exist. The decoded rules are encoded again and must give the kernel's snapshot.
pub fn read_running(name: &str) -> Result<Option<Running>, DecodeError> {
    let Some(kernel) = readback::read_table(name)? else {
        return Ok(None);
    };
    let mut raw = Vec::new();
    for (msg, what) in [
        (netlink::NFT_MSG_GETSET, "the sets"),
        (netlink::NFT_MSG_GETCHAIN, "the chains"),
        (netlink::NFT_MSG_GETRULE, "the rules"),
    ] {
        raw.extend(dump(name, msg, what)?);
    }
    let messages: Vec<netlink::Message<'_>> =
        raw.iter().flat_map(|b| netlink::messages(b)).collect();
    let (mut ruleset, counters) = decode(name, &messages, &kernel.set_elements)?;
    ruleset.record = kernel
        .comment
        .as_deref()
        .map(|c| readback::split_comment(c).map_or(c, |(record, _)| record))
        .unwrap_or_default()
        .to_string();
    let again = readback::snapshot_of(&ruleset)?;
    if again.fingerprint() != kernel.snapshot.fingerprint() {
        return Err(DecodeError::Mismatch(
            kernel.snapshot.describe_difference(&again),
        ));
    }
    Ok(Some(Running {
        ruleset,
        kernel,
        counters,
    }))
}

/// Decodes the objects batch of a ruleset, as if the kernel had dumped it (for tests).
#[cfg(test)]
pub(crate) fn round_trip(rs: &Ruleset) -> Ruleset {
    let bytes = crate::nft::encode::contents(rs).expect("encodes");
    let messages = netlink::messages(&bytes);
    let elements = rs
        .sets
        .iter()
        .map(|s| (s.name.clone(), s.elements.clone()))
        .collect();
    let (mut back, counters) = decode(&rs.table, &messages, &elements).expect("decodes");
    back.record = rs.record.clone();
    back.set_ip_forward = rs.set_ip_forward;
    let counted: usize = rs
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .filter(|r| r.counter)
        .count();
    assert_eq!(counters.len(), counted);
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), Some(24));
        assert_eq!(prefix_len(&[255, 192, 0, 0]), Some(10));
        assert_eq!(prefix_len(&[255, 0, 255, 0]), None);
    }

    use crate::nft::ruleset::{IPPROTO_ICMPV6, ND_NEIGHBOR_SOLICIT};
    use std::net::Ipv6Addr;

    /// The position of each match kind in [`sample_matches`]. Exhaustive on purpose: a new
    /// variant does not compile until it is given a place here, and the test below fails
    /// until it has a sample that decodes back to itself.
    fn match_kind(m: &Match) -> usize {
        match m {
            Match::Oif(_) => 0,
            Match::Iif(_) => 1,
            Match::Nfproto(_) => 2,
            Match::L4proto(_) => 3,
            Match::Daddr(_) => 4,
            Match::Saddr(_) => 5,
            Match::DaddrIn(..) => 6,
            Match::Dport(..) => 7,
            Match::Sport(..) => 8,
            Match::SkUid(_) => 9,
            Match::HopLimit(_) => 10,
            Match::Icmpv6Type(_) => 11,
            Match::CtStatusDnat => 12,
            Match::DaddrLocal => 13,
            Match::CtDirectionReply => 14,
        }
    }
    const MATCH_KINDS: usize = 15;

    fn action_kind(a: &Action) -> usize {
        match a {
            Action::Accept => 0,
            Action::Return => 1,
            Action::Reject => 2,
            Action::RejectTcpReset => 3,
            Action::Drop => 4,
            Action::Log { .. } => 5,
            Action::Dnat(..) => 6,
            Action::Masquerade => 7,
        }
    }
    const ACTION_KINDS: usize = 8;

    fn hook_kind(h: Hook) -> usize {
        match h {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
    const HOOK_KINDS: usize = 5;

    /// One rule per match kind (alone, and in the combinations the plans write).
    fn sample_matches() -> Vec<Vec<Match>> {
        let v4 = |a: [u8; 4], l| Prefix::new(IpAddr::from(a), l);
        let v6 = |a: &str, l| Prefix::new(a.parse::<Ipv6Addr>().unwrap().into(), l);
        vec![
            vec![Match::Oif(IfPattern::exact("eth0"))],
            vec![Match::Oif(IfPattern::from_parts("tun", true))],
            vec![Match::Iif(IfPattern::exact("lo"))],
            vec![Match::Iif(IfPattern::from_parts("tun", true))],
            vec![Match::Nfproto(Family::V4)],
            vec![Match::Nfproto(Family::V6), Match::L4proto(L4::Udp.number())],
            vec![Match::L4proto(L4::Tcp.number())],
            vec![Match::Daddr(v4([192, 168, 1, 0], 24))],
            vec![
                Match::Daddr(v6("fe80::", 10)),
                Match::L4proto(IPPROTO_ICMPV6),
            ],
            vec![Match::Daddr(v4([10, 42, 0, 1], 32))],
            vec![
                Match::Oif(IfPattern::exact("eth0")),
                Match::Saddr(v4([192, 168, 1, 0], 24)),
                Match::Dport(L4::Udp, 53),
            ],
            vec![Match::Saddr(v6("fd00::", 8))],
            vec![Match::DaddrIn("gateways4".into(), Family::V4)],
            vec![Match::DaddrIn("gateways6".into(), Family::V6)],
            vec![Match::Dport(L4::Tcp, 53)],
            vec![Match::Sport(L4::Udp, 68), Match::Dport(L4::Udp, 67)],
            vec![Match::SkUid(1000)],
            vec![Match::HopLimit(255), Match::Icmpv6Type(ND_NEIGHBOR_SOLICIT)],
            vec![Match::Icmpv6Type(128)],
            vec![
                Match::CtStatusDnat,
                Match::Daddr(v4([10, 42, 0, 1], 32)),
                Match::Dport(L4::Udp, 53),
            ],
            vec![Match::CtStatusDnat],
            vec![Match::DaddrLocal],
            vec![
                Match::Iif(IfPattern::from_parts("tun", true)),
                Match::CtDirectionReply,
            ],
            vec![Match::CtDirectionReply],
        ]
    }

    #[test]
    fn every_match_action_and_hook_decodes_back_to_itself() {
        let filter = |hook, rules: Vec<Rule>| Chain {
            name: format!("f{}", hook_kind(hook)),
            hook,
            kind: ChainKind::Filter,
            priority: 0,
            rules,
        };
        let mut rules: Vec<Rule> = sample_matches()
            .into_iter()
            .map(|m| Rule::new(m, Action::Accept))
            .collect();
        for action in [
            Action::Return,
            Action::Reject,
            Action::Drop,
            Action::Log {
                prefix: "p: ".into(),
                level: 7,
            },
        ] {
            rules.push(Rule::new([Match::Dport(L4::Udp, 53)], action.clone()));
            rules.push(Rule::new([Match::Dport(L4::Udp, 53)], action).counted());
        }
        rules.push(Rule::new([Match::L4proto(6)], Action::RejectTcpReset).counted());
        let dnat = Rule::new(
            [Match::Nfproto(Family::V4), Match::Dport(L4::Tcp, 53)],
            Action::Dnat(Ipv4Addr::new(10, 42, 0, 1), 53),
        );
        let rs = Ruleset {
            table: "t".into(),
            record: String::new(),
            sets: vec![
                Set {
                    name: "gateways4".into(),
                    family: Family::V4,
                    elements: vec!["198.51.100.1".parse().unwrap()],
                },
                Set {
                    name: "gateways6".into(),
                    family: Family::V6,
                    elements: vec!["2001:db8::1".parse().unwrap()],
                },
            ],
            chains: vec![
                filter(Hook::Output, rules.clone()),
                filter(Hook::Forward, rules.clone()),
                filter(Hook::Input, rules.clone()),
                filter(Hook::Postrouting, rules.clone()),
                filter(Hook::Prerouting, rules),
                Chain {
                    name: "nat_pre".into(),
                    hook: Hook::Prerouting,
                    kind: ChainKind::Nat,
                    priority: -100,
                    rules: vec![dnat.clone()],
                },
                Chain {
                    name: "nat_out".into(),
                    hook: Hook::Output,
                    kind: ChainKind::Nat,
                    priority: -100,
                    rules: vec![dnat],
                },
                Chain {
                    name: "nat_post".into(),
                    hook: Hook::Postrouting,
                    kind: ChainKind::Nat,
                    priority: 100,
                    rules: vec![Rule::new(
                        [Match::Daddr(Prefix::new(IpAddr::from([10, 42, 0, 1]), 32))],
                        Action::Masquerade,
                    )],
                },
            ],
            set_ip_forward: false,
        };
        // Every kind has a sample.
        let all: Vec<&Rule> = rs.chains.iter().flat_map(|c| &c.rules).collect();
        let matches: std::collections::BTreeSet<usize> = all
            .iter()
            .flat_map(|r| r.matches.iter().map(match_kind))
            .collect();
        let actions: std::collections::BTreeSet<usize> =
            all.iter().map(|r| action_kind(&r.action)).collect();
        let hooks: std::collections::BTreeSet<usize> =
            rs.chains.iter().map(|c| hook_kind(c.hook)).collect();
        assert_eq!(
            matches,
            (0..MATCH_KINDS).collect(),
            "a match kind has no sample"
        );
        assert_eq!(
            actions,
            (0..ACTION_KINDS).collect(),
            "an action has no sample"
        );
        assert_eq!(hooks, (0..HOOK_KINDS).collect(), "a hook has no sample");
        for h in [
            Hook::Prerouting,
            Hook::Input,
            Hook::Forward,
            Hook::Output,
            Hook::Postrouting,
        ] {
            assert_eq!(hook_of(hook_number(h)), Some(h));
        }
        assert_eq!(round_trip(&rs), rs);
    }

    #[test]
    fn foreign_expressions_are_named() {
        // A rule of one `objref`-like unknown expression.
        let mut e = Vec::new();
        let name = netlink::cstr("quota");
        let mut inner = Vec::new();
        inner.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        inner.extend_from_slice(&1u16.to_ne_bytes());
        inner.extend_from_slice(&name);
        while inner.len() % 4 != 0 {
            inner.push(0);
        }
        e.extend_from_slice(&((4 + inner.len()) as u16).to_ne_bytes());
        e.extend_from_slice(&1u16.to_ne_bytes());
        e.extend_from_slice(&inner);
        assert_eq!(decode_rule(&e).unwrap_err(), "a quota expression");
    }
}
