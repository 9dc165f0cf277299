//! nft transport: a [`Ruleset`] becomes one nftnl batch, sent with mnl in one `sendmsg`, and
//! committed by the kernel as one transaction; errors are read back per sequence number.
//!
//! The batch is `table add, table delete, table add (with comment), sets, chains, rules`: the
//! first add makes the delete valid when the table is absent, the delete drops the old
//! contents, so a running firewall is replaced with no moment in between, and any error
//! aborts the whole transaction and leaves the previous ruleset exactly as it was.
//!
//! Traps handled here (see the project notes): a batch larger than one page is sent as one
//! message (several `sendto`s would be several transactions and the kernel refuses them), the
//! receive buffer is sized for one ACK per message (ENOBUFS otherwise, after a commit), and
//! duplicate ACKs are tolerated.

use std::collections::BTreeSet;
use std::ffi::{CString, NulError};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, ConntrackStatus, Counter, IcmpCode, Icmpv6HeaderField,
    Immediate, InterfaceName, Ipv4HeaderField, Ipv6HeaderField, Lookup, Masquerade, Meta, Nat,
    NatType, NetworkHeaderField, Payload, Register, RejectionType, TcpHeaderField,
    TransportHeaderField, UdpHeaderField, Verdict,
};
use nftnl::set::{Set as NftSet, SetKey};
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily};

use crate::nft::netlink;
use crate::nft::ruleset::{Action, ChainKind, Family, Hook, IfPattern, Match, Ruleset, L4};
use crate::sys;

/// Why the kernel was not changed as asked.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A name held a NUL byte.
    #[error("a table, chain or set name holds a NUL byte: {0}")]
    Name(#[from] NulError),
    /// A rule names a set of the wrong family or one that is not declared (a planning bug).
    #[error("a rule refers to set {0:?}, which the ruleset does not declare for that family")]
    UnknownSet(String),
    /// The netfilter socket could not be opened.
    #[error(
        "could not open a netfilter netlink socket ({0}); is nf_tables available in this kernel?"
    )]
    Open(#[source] io::Error),
    /// Sending failed; nothing was applied.
    #[error("could not send the ruleset to the kernel ({0}); nothing was changed")]
    Send(#[source] io::Error),
    /// Receiving the answer failed.
    #[error("could not read the kernel's answer ({0})")]
    Recv(#[source] io::Error),
    /// The kernel refused one message; the whole transaction was aborted.
    #[error("the kernel refused the ruleset at {what} ({source}); nothing was changed")]
    Rejected {
        /// Which object the refused message built.
        what: String,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// A dump request failed.
    #[error("could not read {what} back from the kernel ({source})")]
    Dump {
        /// What was being read.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer to `GETGEN` carried no generation.
    #[error("the kernel did not say which nftables generation it holds")]
    NoGeneration,
    /// Every attempt to read a table saw nftables change in the middle.
    #[error("another program changed nftables {attempts} times while table inet {table} was being read; run the command again when it has settled")]
    Unsettled {
        /// The table.
        table: String,
        /// How many times it was read.
        attempts: u32,
    },
}

/// The ruleset generation of a network namespace: the kernel counts every committed nftables
/// transaction, whoever sent it. A table read at the generation our commit produced is what we
/// committed; a later generation means that someone committed after us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u32);

impl Generation {
    /// The low 16 bits, as the `res_id` of every nftables reply carries them.
    pub fn res_id(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The generation in a `NEWGEN` message (`NFTA_GEN_ID`), if it is one.
fn generation_of(msg: &netlink::Message<'_>) -> Option<Generation> {
    if msg.nft_type() != Some(netlink::NFT_MSG_NEWGEN) {
        return None;
    }
    const NFTA_GEN_ID: u16 = 1;
    netlink::find(&msg.nft_attrs(), NFTA_GEN_ID)
        .and_then(|a| a.be_u32())
        .map(Generation)
}

/// The current ruleset generation of the calling thread's namespace (one `GETGEN`).
pub fn generation() -> Result<Generation, TransportError> {
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    let req = netlink::nft_request(
        netlink::NFT_MSG_GETGEN,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        libc::AF_UNSPEC as u8,
        &[],
    );
    dump(&req, "the ruleset generation")?
        .iter()
        .flat_map(|raw| netlink::messages(raw))
        .find_map(|m| generation_of(&m))
        .ok_or(TransportError::NoGeneration)
}

/// Asks the kernel to echo the generation a batch commits. The kernel decides by the
/// `NLM_F_ECHO` flag of the first message after `NFNL_MSG_BATCH_BEGIN` (the batch's first
/// object), and then sends the commit's `NEWGEN` (and that one object's notification) back to
/// us, before the ACKs.
fn echo_generation(batch: &mut [u8]) {
    const NLM_F_ECHO: u16 = 0x8;
    let Some(begin) = netlink::messages(batch).first().map(|m| m.raw.len()) else {
        return;
    };
    let first = (begin + 3) & !3;
    if let Some(flags) = batch.get_mut(first + 6..first + 8) {
        let f = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ECHO;
        flags.copy_from_slice(&f.to_ne_bytes());
    }
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

/// nftables table flags (`NFTA_TABLE_FLAGS`), as a set of bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TableFlags(pub u32);

impl TableFlags {
    /// No flag: an ordinary table that any root process may change or delete.
    pub const NONE: TableFlags = TableFlags(0);
    /// `NFT_TABLE_F_OWNER` (Linux >= 5.12): the table belongs to the netlink socket that
    /// created it; only that socket may change or delete it, and `flush ruleset` from any
    /// other socket skips it.
    pub const OWNER: TableFlags = TableFlags(0x2);
    /// `NFT_TABLE_F_PERSIST` (Linux >= 6.9): with `OWNER`, the table stays when its owner's
    /// socket closes (it is then orphaned: no owner, ordinary again) instead of being
    /// destroyed.
    pub const PERSIST: TableFlags = TableFlags(0x4);
    /// Owner and persist: what a guard asks for.
    pub const OWNER_PERSIST: TableFlags = TableFlags(0x6);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: TableFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What kind of batch to build.
enum Mode<'a> {
    /// The objects only, with a plain table and no set elements: the input of the
    /// fingerprint, never sent.
    Objects,
    /// `table add, table delete, table add (with comment and flags), contents`: replaces
    /// whatever is there, or nothing.
    Replace(&'a str, TableFlags),
    /// `table create (exclusive, with comment), contents`: only when the table is absent. The
    /// kernel refuses it with EEXIST if the table appeared meanwhile. Without a delete in the
    /// transaction the kernel need not wait for readers of the old table (an RCU grace
    /// period, about 15 ms), so a fresh start is several times faster.
    Create(&'a str, TableFlags),
}

/// Encodes the replacement batch for `rs`, with `comment` on the table.
pub fn encode_replace(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Replace(comment, TableFlags::NONE))
}

/// Like [`encode_replace`], the new table created with `flags`. The first `table add` carries
/// no flags, so it never conflicts with the flags of the table it replaces; the kernel still
/// refuses the whole batch (EPERM) when another socket owns that table.
pub fn encode_replace_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: TableFlags,
) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Replace(comment, flags))
}

/// Encodes a batch that creates table `rs.table`, with `comment`, and fails with EEXIST if
/// it exists.
pub fn encode_create(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Create(comment, TableFlags::NONE))
}

/// Like [`encode_create`], the table created with `flags`.
pub fn encode_create_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: TableFlags,
) -> Result<Encoded, TransportError> {
    encode(rs, Mode::Create(comment, flags))
}

/// Encodes one `table add` of the existing table `inet NAME` with `flags` and nothing else:
/// with [`TableFlags::OWNER_PERSIST`] it makes the sending socket the owner of an orphaned
/// table (one whose owner closed its socket) without touching its contents.
pub fn encode_adopt(name: &str, flags: TableFlags) -> Result<Encoded, TransportError> {
    let cname = CString::new(name)?;
    let msg = sys::CommentedTable::with_flags(&cname, None, false, Some(flags.0));
    let mut batch = Batch::new();
    batch.add(&msg, MsgType::Add);
    Ok(Encoded {
        batch: batch.finalize(),
        labels: vec![format!("table inet {name} (taking ownership)")],
    })
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
    // Without flags, the add never conflicts with the flags of a persisted table.
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
        // Without flags, the add never conflicts with the flags of the table it replaces.
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
            let msg = if flags == TableFlags::NONE {
                sys::CommentedTable::new(&tname, &comment, exclusive)
            } else {
                sys::CommentedTable::with_flags(&tname, Some(&comment), exclusive, Some(flags.0))
            };
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
            encode_rule(&mut rule, r, &sets4, &sets6)?;
            batch.add(&rule, MsgType::Add);
            labels.push(format!(
                "rule {} of chain {} ({})",
                n + 1,
                c.name,
                crate::nft::render::rule_text(r)
            ));
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
    r: &crate::nft::ruleset::Rule,
    sets4: &[NftSet<'_, Ipv4Addr>],
    sets6: &[NftSet<'_, Ipv6Addr>],
) -> Result<(), TransportError> {
    let (matches, action) = (&r.matches, &r.action);
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
                // As nft encodes `ct status dnat`: load, mask the bit, compare with zero.
                rule.add_expr(&Conntrack::Status);
                rule.add_expr(&Bitwise::new(ConntrackStatus::DST_NAT.bits(), 0u32));
                rule.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
            }
            Match::DaddrLocal => {
                // nft compares the route type as a 32-bit host-order value.
                rule.add_expr(&sys::FibDaddrType);
                rule.add_expr(&Cmp::new(CmpOp::Eq, u32::from(libc::RTN_LOCAL)));
            }
            Match::CtDirectionReply => {
                // IP_CT_DIR_REPLY, one byte as nft compares it.
                rule.add_expr(&sys::CtDirection);
                rule.add_expr(&Cmp::new(CmpOp::Eq, 1u8));
            }
        }
    }
    if r.counter {
        rule.add_expr(&Counter);
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

/// The receive buffer: netlink hands over one message batch (skb) per read, and the kernel
/// keeps dump batches under 32 KiB; ACKs and (with `NETLINK_CAP_ACK`) errors are tiny.
const RECV_BUFFER: usize = 64 << 10;

/// A netfilter socket with buffers sized for `messages` ACKs and a batch of `bytes`.
fn open_socket(messages: usize, bytes: usize) -> Result<mnl::Socket, TransportError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(TransportError::Open)?;
    configure_socket(&socket, messages, bytes)?;
    Ok(socket)
}

/// Sizes the buffers for `messages` ACKs and a batch of `bytes`, bounds receives in time and
/// asks for short error messages.
fn configure_socket(
    socket: &mnl::Socket,
    messages: usize,
    bytes: usize,
) -> Result<(), TransportError> {
    // An ACK costs about 1 KiB of receive buffer (skb overhead included).
    sys::size_socket_buffers(
        socket,
        messages * 1024 + (256 << 10),
        bytes * 2 + (256 << 10),
    )
    .map_err(TransportError::Open)?;
    sys::set_receive_timeout(socket, 30).map_err(TransportError::Open)?;
    sys::cap_acks(socket).map_err(TransportError::Open)
}

/// Sends an encoded batch in one message and waits for every ACK. On `Err(Rejected)` the
/// kernel aborted the whole transaction. On success, returns the generation the commit
/// produced, as the kernel echoed it (`None` if it did not).
pub fn commit(enc: &Encoded) -> Result<Option<Generation>, TransportError> {
    let mut buf = enc.bytes();
    echo_generation(&mut buf);
    let seqs = enc.batch.sequence_numbers();
    let socket = open_socket(seqs.len(), buf.len())?;
    let mut rbuf = sys::AlignedBuf::new(RECV_BUFFER);
    commit_on(&socket, &mut rbuf, enc, &buf)
}

/// Sends `buf` (the bytes of `enc`, the echo flag set) on `socket` and waits for every ACK;
/// returns the generation the kernel echoed.
fn commit_on(
    socket: &mnl::Socket,
    rbuf: &mut sys::AlignedBuf,
    enc: &Encoded,
    buf: &[u8],
) -> Result<Option<Generation>, TransportError> {
    let seqs = enc.batch.sequence_numbers();
    let sent = socket.send(buf).map_err(TransportError::Send)?;
    if sent != buf.len() {
        return Err(TransportError::Send(io::Error::other(format!(
            "sent {sent} of {} bytes",
            buf.len()
        ))));
    }
    // With begin and end ACKed (Linux >= 6.10) the objects start one later.
    let first_object = if seqs.len() == enc.labels.len() + 2 {
        seqs.start + 1
    } else {
        seqs.start
    };
    let portid = socket.portid();
    let mut pending: BTreeSet<u32> = seqs.clone().collect();
    let mut committed = None;
    while !pending.is_empty() {
        let bytes = rbuf.bytes_mut();
        let n = socket.recv_raw(bytes).map_err(TransportError::Recv)?;
        for msg in netlink::messages(&bytes[..n]) {
            if msg.pid != portid {
                continue;
            }
            // The echoed NEWGEN comes before the ACKs, which the kernel sends after the commit.
            if let Some(g) = generation_of(&msg) {
                committed = Some(g);
                continue;
            }
            if !seqs.contains(&msg.seq) {
                continue;
            }
            match msg.error_code() {
                Some(0) => {
                    pending.remove(&msg.seq);
                }
                Some(e) => {
                    let what = msg
                        .seq
                        .checked_sub(first_object)
                        .and_then(|i| enc.labels.get(i as usize))
                        .cloned()
                        .unwrap_or_else(|| "the batch boundary".to_string());
                    return Err(TransportError::Rejected {
                        what,
                        source: io::Error::from_raw_os_error(-e),
                    });
                }
                None => {}
            }
        }
    }
    Ok(committed)
}

/// Sends one dump request and collects every reply message's bytes (one Vec per message).
///
/// A dump that the kernel marks inconsistent (`NLM_F_DUMP_INTR`: the ruleset changed while it
/// was being read) is read again, up to three times.
pub fn dump(request: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, TransportError> {
    let mut attempt = 0;
    loop {
        let (messages, consistent) = dump_once(request, what)?;
        attempt += 1;
        if consistent || attempt == 3 {
            return Ok(messages);
        }
    }
}

/// One dump on a socket of its own.
fn dump_once(request: &[u8], what: &'static str) -> Result<(Vec<Vec<u8>>, bool), TransportError> {
    let socket = open_socket(64, request.len()).map_err(|e| match e {
        TransportError::Open(source) => TransportError::Dump { what, source },
        other => other,
    })?;
    let mut rbuf = sys::AlignedBuf::new(RECV_BUFFER);
    dump_on(&socket, &mut rbuf, request, what)
}

/// One dump on `socket`: the messages, and whether the kernel vouched for their consistency.
fn dump_on(
    socket: &mnl::Socket,
    rbuf: &mut sys::AlignedBuf,
    request: &[u8],
    what: &'static str,
) -> Result<(Vec<Vec<u8>>, bool), TransportError> {
    const NLM_F_DUMP_INTR: u16 = 0x10;
    let mut consistent = true;
    socket
        .send(request)
        .map_err(|source| TransportError::Dump { what, source })?;
    let portid = socket.portid();
    let mut out = Vec::new();
    loop {
        let bytes = rbuf.bytes_mut();
        let n = socket
            .recv_raw(bytes)
            .map_err(|source| TransportError::Dump { what, source })?;
        if n == 0 {
            return Ok((out, consistent));
        }
        for msg in netlink::messages(&bytes[..n]) {
            if msg.pid != portid && msg.pid != 0 {
                continue;
            }
            if msg.flags & NLM_F_DUMP_INTR != 0 {
                consistent = false;
            }
            match msg.ty {
                netlink::NLMSG_DONE => return Ok((out, consistent)),
                netlink::NLMSG_ERROR => match msg.error_code() {
                    Some(0) | None => return Ok((out, consistent)),
                    Some(e) if -e == libc::ENOENT => return Ok((out, consistent)),
                    Some(e) => {
                        return Err(TransportError::Dump {
                            what,
                            source: io::Error::from_raw_os_error(-e),
                        })
                    }
                },
                _ => out.push(msg.raw.to_vec()),
            }
        }
    }
}

/// One netfilter netlink socket kept open across transactions and dumps.
///
/// The one-shot [`commit`] and [`dump`] open a socket per call. A session keeps one, which
/// matters when a table is created with [`TableFlags::OWNER`]: the kernel binds the table to
/// the socket that created it, so every later change must go through that same socket, and
/// closing it ends the ownership (with [`TableFlags::PERSIST`] the table stays, orphaned).
/// It also saves the socket set-up of each call.
///
/// Like every netlink socket it belongs to the network namespace of the thread that opened
/// it. It is not `Send`: keep it on the thread that opened it.
pub struct Session {
    socket: mnl::Socket,
    rbuf: sys::AlignedBuf,
    /// The receive and send buffer sizes set so far.
    sized: (usize, usize),
}

impl Session {
    /// Opens a netfilter socket in the calling thread's network namespace. Programs this
    /// process starts do not inherit it (`FD_CLOEXEC`): a child holding it would keep a table
    /// owned after this session closed.
    pub fn open() -> Result<Session, TransportError> {
        let socket = mnl::Socket::open(mnl::Bus::Netfilter).map_err(TransportError::Open)?;
        sys::set_cloexec(&socket).map_err(TransportError::Open)?;
        socket
            .bind(0, 0) // MNL_SOCKET_AUTOPID: the kernel picks the port id
            .map_err(TransportError::Open)?;
        configure_socket(&socket, 64, 0)?;
        Ok(Session {
            socket,
            rbuf: sys::AlignedBuf::new(RECV_BUFFER),
            sized: (64 * 1024 + (256 << 10), 256 << 10),
        })
    }

    /// The socket's netlink port id: what the kernel records as the owner of the tables it
    /// creates with [`TableFlags::OWNER`].
    pub fn portid(&self) -> u32 {
        self.socket.portid()
    }

    /// Like [`commit`], through this session's socket; returns the generation the commit
    /// produced, as the kernel echoed it.
    pub fn commit(&mut self, enc: &Encoded) -> Result<Option<Generation>, TransportError> {
        let mut buf = enc.bytes();
        echo_generation(&mut buf);
        let want = (
            enc.batch.sequence_numbers().len() * 1024 + (256 << 10),
            buf.len() * 2 + (256 << 10),
        );
        if want.0 > self.sized.0 || want.1 > self.sized.1 {
            let grown = (want.0.max(self.sized.0), want.1.max(self.sized.1));
            sys::size_socket_buffers(&self.socket, grown.0, grown.1)
                .map_err(TransportError::Open)?;
            self.sized = grown;
        }
        self.drain();
        commit_on(&self.socket, &mut self.rbuf, enc, &buf)
    }

    /// Like [`dump`], through this session's socket.
    pub fn dump(
        &mut self,
        request: &[u8],
        what: &'static str,
    ) -> Result<Vec<Vec<u8>>, TransportError> {
        let mut attempt = 0;
        loop {
            self.drain();
            let (messages, consistent) = dump_on(&self.socket, &mut self.rbuf, request, what)?;
            attempt += 1;
            if consistent || attempt == 3 {
                return Ok(messages);
            }
        }
    }

    /// Drops whatever an earlier exchange left unread (a late duplicate ACK, the rest of a
    /// refused batch's ACKs), so that sequence numbers, which restart with every batch,
    /// are never matched against an old answer.
    fn drain(&mut self) {
        while sys::recv_nowait(&self.socket, self.rbuf.bytes_mut()).is_ok_and(|n| n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_flag_goes_on_the_first_object_only() {
        const NLM_F_ECHO: u16 = 0x8;
        let mut buf = encode_remove("bitmask").expect("encode").bytes();
        let before: Vec<u16> = netlink::messages(&buf).iter().map(|m| m.flags).collect();
        echo_generation(&mut buf);
        let after: Vec<u16> = netlink::messages(&buf).iter().map(|m| m.flags).collect();
        assert_eq!(after.len(), before.len());
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let want = if i == 1 { b | NLM_F_ECHO } else { *b };
            assert_eq!(*a, want, "message {i}");
        }
    }

    #[test]
    fn a_newgen_message_carries_the_generation() {
        let id = 0x0001_0203u32.to_be_bytes();
        let msg = netlink::nft_request(netlink::NFT_MSG_NEWGEN, 0, 1, 0, &[(1, &id)]);
        let parsed = netlink::messages(&msg);
        assert_eq!(generation_of(&parsed[0]), Some(Generation(0x0001_0203)));
        assert_eq!(Generation(0x0001_0203).res_id(), 0x0203);
        let table = netlink::nft_request(netlink::NFT_MSG_NEWTABLE, 0, 1, 0, &[(1, &id)]);
        assert_eq!(generation_of(&netlink::messages(&table)[0]), None);
    }
}
