//! A [`Ruleset`] as the bytes of one nftables batch: netlink messages written straight into
//! one buffer, with no C library and no object per table, chain, rule or set element.
//!
//! The messages are those libnftnl would write for the same objects (the same attributes, in
//! the same order, so the kernel stores and dumps the same thing), with two differences:
//!
//! - **Acknowledgements**: only the batch's last message asks for one (`NLM_F_ACK`). The
//!   kernel reports an error for every message that fails whether or not it asked for an ACK,
//!   each carrying the sequence number of the message it refuses (so an error is still tied
//!   to its object by [`Encoded::label`]), and it sends every error and ACK only after it has
//!   committed or aborted the whole batch: the last message's ACK, with no error before it,
//!   means the transaction was committed.
//! - **Echo**: a batch that creates a table asks the kernel to echo the table, its sets,
//!   chains and rules as it commits them (`NLM_F_ECHO`), and, by the flag on its first
//!   message, the generation its commit produces. The echo is the kernel's own account of
//!   what it stored, the same messages a dump of the table gives; [`crate::nft::engine`]
//!   verifies a start with it instead of dumping them again. Set elements are not echoed:
//!   the kernel would build one notification per element (four times the commit's own cost
//!   at 10,000 elements), where a dump packs thousands into one message.
//!
//! Set elements are written in as few messages as the 16-bit attribute length allows (3,276
//! IPv4 or 2,340 IPv6 elements each), directly from the addresses: encoding is linear in the
//! number of elements and allocates nothing per element.

use std::ffi::{CString, NulError};
use std::net::IpAddr;

use crate::nft::netlink;
use crate::nft::ruleset::{Action, ChainKind, Family, Hook, IfPattern, Match, Ruleset};

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ECHO`.
pub const NLM_F_ECHO: u16 = 0x8;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

/// `NFNL_MSG_BATCH_BEGIN`.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_DELTABLE: u16 = 2;

const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

// Registers and verdicts.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_RETURN: u32 = -5i32 as u32;

/// The sequence number of a batch's first message (its begin); the others follow in order.
pub const FIRST_SEQ: u32 = 1;

/// The largest set-element message body: the elements attribute's length is 16 bits.
const ELEMENTS_MAX: usize = 0xffff;

/// What one message of a batch builds, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The batch's begin or end marker.
    Boundary,
    /// The table (also the plain add that makes a delete valid).
    Table,
    /// The delete that drops the table's old contents.
    Replacing,
    /// The removal of the table.
    Removing,
    /// The `table add` that takes ownership of an existing table.
    Adopting,
    /// Set number `n` (in [`Ruleset::sets`]).
    Set(usize),
    /// A message of elements of set number `n`.
    Elements(usize),
    /// Chain number `n` (in [`Ruleset::chains`]).
    Chain(usize),
    /// Rule `rule` of chain number `chain`.
    Rule {
        /// The chain's index.
        chain: usize,
        /// The rule's index in it.
        rule: usize,
    },
}

/// What the batch does with the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `table create` (exclusive): only when the table is absent; the kernel refuses it with
    /// EEXIST if the table appeared meanwhile. Without a delete in the transaction the kernel
    /// need not wait for readers of the old table (an RCU grace period, about 15 ms).
    Create,
    /// `table add, table delete, table add`: replaces whatever is there, or nothing; the
    /// first add makes the delete valid when the table is absent.
    Replace,
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

/// An encoded batch: its messages, in two parts (the table's head, then the contents and the
/// batch end), sent as one datagram. The head is rebuilt to switch between [`Mode`]s; the
/// contents stay.
#[derive(Debug, Clone)]
pub struct Encoded {
    head: Vec<u8>,
    body: Vec<u8>,
    /// The labels of the head's messages, then of the body's, by sequence number.
    labels: Vec<(u32, Label)>,
    /// The table's name.
    table: String,
    /// The sets' names.
    sets: Vec<String>,
    /// The chains, for the names and texts of rules in error messages.
    chains: Vec<crate::nft::ruleset::Chain>,
    /// The sequence number of the message whose ACK ends the batch.
    last: u32,
    /// The flags the head gives the new table.
    flags: TableFlags,
}

impl Encoded {
    /// The batch as one buffer.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.body);
        v
    }

    /// The batch in its two parts, to be sent as one datagram.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.body]
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether it holds no message (never: a batch has at least its begin and end).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many netlink messages it holds, begin and end included.
    pub fn messages(&self) -> usize {
        self.labels.len()
    }

    /// Whether it holds an object message (a batch of only its begin and end asks nothing,
    /// and the kernel answers nothing).
    pub fn has_objects(&self) -> bool {
        self.labels.len() > 2
    }

    /// The sequence number of the message whose ACK says the batch was processed.
    pub fn last_seq(&self) -> u32 {
        self.last
    }

    /// Whether `seq` is one of this batch's messages.
    pub fn contains(&self, seq: u32) -> bool {
        self.labels.binary_search_by_key(&seq, |l| l.0).is_ok()
    }

    /// What the message with sequence number `seq` builds, in words (`None`: not ours).
    pub fn label(&self, seq: u32) -> Option<String> {
        let i = self.labels.binary_search_by_key(&seq, |l| l.0).ok()?;
        let t = &self.table;
        let set = |n: usize| self.sets.get(n).map_or("?", String::as_str);
        Some(match self.labels[i].1 {
            Label::Boundary => "the batch boundary".to_string(),
            Label::Table => format!("table inet {t}"),
            Label::Replacing => format!("replacing table inet {t}"),
            Label::Removing => format!("removing table inet {t}"),
            Label::Adopting => format!("table inet {t} (taking ownership)"),
            Label::Set(n) => format!("set {}", set(n)),
            Label::Elements(n) => format!("elements of set {}", set(n)),
            Label::Chain(n) => format!("chain {}", self.chains.get(n).map_or("?", |c| &c.name)),
            Label::Rule { chain, rule } => match self.chains.get(chain) {
                Some(c) => format!(
                    "rule {} of chain {} ({})",
                    rule + 1,
                    c.name,
                    c.rules
                        .get(rule)
                        .map(crate::nft::render::rule_text)
                        .unwrap_or_default()
                ),
                None => "a rule".to_string(),
            },
        })
    }

    /// Replaces the head: the table messages for `mode`, with `comment` on the table.
    pub fn set_head(&mut self, mode: Mode, comment: &str) -> Result<(), NulError> {
        // Without contents, the table message asks for the batch's one ACK.
        let ack = self.last == 0 || self.last < BODY_SEQ;
        let head = head(&self.table, mode, comment, self.flags, ack)?;
        if ack {
            self.last = head.1.last().map_or(FIRST_SEQ, |l| l.0);
        }
        self.head = head.0;
        self.labels.retain(|l| l.0 >= BODY_SEQ);
        let mut labels = head.1;
        labels.append(&mut self.labels);
        self.labels = labels;
        Ok(())
    }

    /// The messages of the body (contents and batch end), to build the expected snapshot
    /// from the very bytes that are sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// The sequence number of the first message after the head, whatever the mode (the
/// replacing head has four messages, the creating one two; the kernel needs no contiguous
/// numbers).
const BODY_SEQ: u32 = FIRST_SEQ + 4;

/// Fails with the error `CString::new` gives when `s` holds a NUL byte.
fn no_nul(s: &str) -> Result<(), NulError> {
    if s.as_bytes().contains(&0) {
        CString::new(s)?;
    }
    Ok(())
}

/// A netlink message builder over a growing buffer.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// Starts a message (header and `nfgenmsg`); returns its offset for [`Writer::end`].
    fn begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Starts an nftables message.
    fn nft(&mut self, msg: u16, flags: u16, seq: u32, family: u8) -> usize {
        self.begin(
            (netlink::NFNL_SUBSYS_NFTABLES << 8) | msg,
            flags,
            seq,
            family,
            0,
        )
    }

    /// Ends the message started at `start` (writes its length).
    fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let n = (4 - self.buf.len() % 4) % 4;
        self.buf.extend_from_slice(&[0; 3][..n]);
    }

    /// A NUL-terminated string attribute.
    fn str(&mut self, ty: u16, s: &str) {
        let len = (5 + s.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A big-endian 32-bit attribute (nftables' numbers are in network order).
    fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Starts a nested attribute; returns its offset for [`Writer::close`].
    fn nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn close(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// A nested data attribute holding one value (`NFTA_DATA_VALUE`).
    fn data(&mut self, ty: u16, value: &[u8]) {
        let n = self.nest(ty);
        self.attr(1, value);
        self.close(n);
    }
}

/// Messages, and what each builds by sequence number.
type Labelled = (Vec<u8>, Vec<(u32, Label)>);

/// The head of a batch: begin, then the table messages for `mode`, the new table with `flags`.
fn head(
    table: &str,
    mode: Mode,
    comment: &str,
    flags: TableFlags,
    ack: bool,
) -> Result<Labelled, NulError> {
    no_nul(table)?;
    no_nul(comment)?;
    let mut w = Writer::with_capacity(128 + comment.len());
    let mut labels = Vec::with_capacity(4);
    let mut seq = FIRST_SEQ;
    let begin = w.begin(
        NFNL_MSG_BATCH_BEGIN,
        0,
        seq,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(begin);
    labels.push((seq, Label::Boundary));
    // The kernel echoes the generation of the commit when the first message after the
    // begin asks for an echo.
    if mode == Mode::Replace {
        for (msg, label) in [
            (netlink::NFT_MSG_NEWTABLE, Label::Table),
            (NFT_MSG_DELTABLE, Label::Replacing),
        ] {
            seq += 1;
            let echo = if label == Label::Table { NLM_F_ECHO } else { 0 };
            let m = w.nft(msg, echo, seq, NFPROTO_INET);
            w.str(1, table);
            // The first add carries no flags: the kernel refuses flags 0 (EOPNOTSUPP) on a
            // table that has the owner or persist flag, and compares flags only when the
            // message carries them. It still refuses the batch (EPERM) when another socket
            // owns the table.
            if label != Label::Table {
                w.be32(2, 0);
            }
            w.end(m);
            labels.push((seq, label));
        }
    }
    seq += 1;
    let excl = match mode {
        Mode::Create => NLM_F_CREATE | NLM_F_EXCL,
        Mode::Replace => 0,
    };
    let ack = if ack { NLM_F_ACK } else { 0 };
    let m = w.nft(
        netlink::NFT_MSG_NEWTABLE,
        excl | ack | NLM_F_ECHO,
        seq,
        NFPROTO_INET,
    );
    w.str(1, table);
    w.be32(2, flags.0);
    // nft's user data: type 0 (comment), length, the text and its NUL (the kernel keeps at
    // most 256 bytes).
    let text = &comment.as_bytes()[..comment.len().min(254)];
    let mut udata = Vec::with_capacity(text.len() + 3);
    udata.push(0);
    udata.push(text.len() as u8 + 1);
    udata.extend_from_slice(text);
    udata.push(0);
    w.attr(6, &udata);
    w.end(m);
    labels.push((seq, Label::Table));
    Ok((w.buf, labels))
}

/// Encodes `rs` as one batch in `mode`, with `comment` on the table.
pub fn ruleset(rs: &Ruleset, mode: Mode, comment: &str) -> Result<Encoded, EncodeError> {
    ruleset_flagged(rs, mode, comment, TableFlags::NONE)
}

/// [`ruleset`], the new table created with `flags` ([`Encoded::set_head`] keeps them).
pub fn ruleset_flagged(
    rs: &Ruleset,
    mode: Mode,
    comment: &str,
    flags: TableFlags,
) -> Result<Encoded, EncodeError> {
    let mut labels = Vec::new();
    let (body, last) = body(rs, &mut labels)?;
    let mut e = Encoded {
        head: Vec::new(),
        body,
        labels,
        table: rs.table.clone(),
        sets: rs.sets.iter().map(|s| s.name.clone()).collect(),
        chains: rs.chains.clone(),
        last,
        flags,
    };
    e.set_head(mode, comment)?;
    Ok(e)
}

/// The contents of `rs` alone (sets, elements, chains, rules, and the batch end), as
/// [`ruleset`] encodes them: the input of the fingerprint.
pub fn contents(rs: &Ruleset) -> Result<Vec<u8>, EncodeError> {
    Ok(body(rs, &mut Vec::new())?.0)
}

/// Encodes the removal of table `inet NAME`: add, then delete (never fails because it is
/// absent).
pub fn remove(name: &str) -> Result<Encoded, NulError> {
    no_nul(name)?;
    let mut w = Writer::with_capacity(128);
    let mut labels = Vec::with_capacity(4);
    let begin = w.begin(
        NFNL_MSG_BATCH_BEGIN,
        0,
        FIRST_SEQ,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(begin);
    labels.push((FIRST_SEQ, Label::Boundary));
    let add = w.nft(
        netlink::NFT_MSG_NEWTABLE,
        NLM_F_ECHO,
        FIRST_SEQ + 1,
        NFPROTO_INET,
    );
    w.str(1, name);
    // No flags: the add never conflicts with the flags of a persisted table.
    w.end(add);
    labels.push((FIRST_SEQ + 1, Label::Table));
    let del = w.nft(NFT_MSG_DELTABLE, NLM_F_ACK, FIRST_SEQ + 2, NFPROTO_INET);
    w.str(1, name);
    w.be32(2, 0);
    w.end(del);
    labels.push((FIRST_SEQ + 2, Label::Removing));
    let end = w.begin(
        NFNL_MSG_BATCH_END,
        0,
        FIRST_SEQ + 3,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(end);
    labels.push((FIRST_SEQ + 3, Label::Boundary));
    Ok(Encoded {
        head: w.buf,
        body: Vec::new(),
        labels,
        table: name.to_string(),
        sets: Vec::new(),
        chains: Vec::new(),
        last: FIRST_SEQ + 2,
        flags: TableFlags::NONE,
    })
}

/// Encodes one `table add` of the existing table `inet NAME` with `flags` and nothing else:
/// with [`TableFlags::OWNER_PERSIST`] it makes the sending socket the owner of an orphaned
/// table (one whose owner closed its socket) without touching its contents.
pub fn adopt(name: &str, flags: TableFlags) -> Result<Encoded, NulError> {
    no_nul(name)?;
    let mut w = Writer::with_capacity(96);
    let begin = w.begin(
        NFNL_MSG_BATCH_BEGIN,
        0,
        FIRST_SEQ,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(begin);
    let add = w.nft(
        netlink::NFT_MSG_NEWTABLE,
        NLM_F_ACK | NLM_F_ECHO,
        FIRST_SEQ + 1,
        NFPROTO_INET,
    );
    w.str(1, name);
    w.be32(2, flags.0);
    w.end(add);
    let end = w.begin(
        NFNL_MSG_BATCH_END,
        0,
        FIRST_SEQ + 2,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(end);
    Ok(Encoded {
        head: w.buf,
        body: Vec::new(),
        labels: vec![
            (FIRST_SEQ, Label::Boundary),
            (FIRST_SEQ + 1, Label::Adopting),
            (FIRST_SEQ + 2, Label::Boundary),
        ],
        table: name.to_string(),
        sets: Vec::new(),
        chains: Vec::new(),
        last: FIRST_SEQ + 1,
        flags,
    })
}

/// One table message of [`tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOp {
    /// `add table` (no error when it exists).
    Add,
    /// `delete table`.
    Delete,
}

/// A batch of plain table messages, each `(family, name, op)` with an nftables family
/// (`NFPROTO_INET` 1, `NFPROTO_IPV4` 2, `NFPROTO_IPV6` 10): what the bench's kernel floors
/// and its reset send. The last message asks for the ACK.
pub fn tables(ops: &[(u8, &str, TableOp)]) -> Result<Encoded, NulError> {
    let mut w = Writer::with_capacity(64 + ops.len() * 48);
    let mut labels = Vec::with_capacity(ops.len() + 2);
    let begin = w.begin(
        NFNL_MSG_BATCH_BEGIN,
        0,
        FIRST_SEQ,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(begin);
    labels.push((FIRST_SEQ, Label::Boundary));
    let mut seq = FIRST_SEQ;
    for (i, (family, name, op)) in ops.iter().enumerate() {
        no_nul(name)?;
        seq += 1;
        let (msg, label) = match op {
            TableOp::Add => (netlink::NFT_MSG_NEWTABLE, Label::Table),
            TableOp::Delete => (NFT_MSG_DELTABLE, Label::Removing),
        };
        let ack = if i + 1 == ops.len() { NLM_F_ACK } else { 0 };
        let m = w.nft(msg, ack, seq, *family);
        w.str(1, name);
        w.be32(2, 0);
        w.end(m);
        labels.push((seq, label));
    }
    let last = seq;
    let end = w.begin(
        NFNL_MSG_BATCH_END,
        0,
        seq + 1,
        0,
        netlink::NFNL_SUBSYS_NFTABLES,
    );
    w.end(end);
    labels.push((seq + 1, Label::Boundary));
    Ok(Encoded {
        head: w.buf,
        body: Vec::new(),
        labels,
        table: ops.first().map_or(String::new(), |o| o.1.to_string()),
        sets: Vec::new(),
        chains: Vec::new(),
        last,
        flags: TableFlags::NONE,
    })
}

/// Why a ruleset could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A name held a NUL byte.
    #[error("a table, chain or set name holds a NUL byte: {0}")]
    Name(#[from] NulError),
    /// A rule names a set that the ruleset does not declare for that family.
    #[error("a rule refers to set {0:?}, which the ruleset does not declare for that family")]
    UnknownSet(String),
}

fn family_of(a: &IpAddr) -> Family {
    if a.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The contents (sets, their elements, chains, rules) and the batch end; returns the buffer
/// and the sequence number of its last object message (0 when there is none).
fn body(rs: &Ruleset, labels: &mut Vec<(u32, Label)>) -> Result<(Vec<u8>, u32), EncodeError> {
    no_nul(&rs.table)?;
    let elements: usize = rs.sets.iter().map(|s| s.elements.len()).sum();
    let mut w = Writer::with_capacity(4096 + rs.rule_count() * 256 + elements * 24);
    let mut seq = BODY_SEQ;
    // IPv4 sets first, then IPv6, as the set ids were always given: in declaration order.
    let order: Vec<usize> = [Family::V4, Family::V6]
        .iter()
        .flat_map(|f| {
            rs.sets
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.family == *f)
                .map(|(i, _)| i)
        })
        .collect();
    for &i in &order {
        let set = &rs.sets[i];
        no_nul(&set.name)?;
        let (key_type, key_len) = match set.family {
            Family::V4 => (7u32, 4u32),
            Family::V6 => (8, 16),
        };
        let size = u32::try_from(set.elements.len()).unwrap_or(u32::MAX);
        let m = w.nft(
            netlink::NFT_MSG_NEWSET,
            NLM_F_APPEND | NLM_F_CREATE | NLM_F_ECHO,
            seq,
            NFPROTO_INET,
        );
        w.str(1, &rs.table);
        w.str(2, &set.name);
        w.be32(4, key_type);
        w.be32(5, key_len);
        w.be32(10, i as u32 + 1);
        // The declared size (nft's `size N`): the kernel sizes the set once instead of
        // growing it while the elements go in.
        let desc = w.nest(9);
        w.be32(1, size);
        w.close(desc);
        w.end(m);
        labels.push((seq, Label::Set(i)));
        seq += 1;
        let mut keys = set
            .elements
            .iter()
            .filter(|e| family_of(e) == set.family)
            .peekable();
        while keys.peek().is_some() {
            let m = w.nft(
                netlink::NFT_MSG_NEWSETELEM,
                NLM_F_CREATE | NLM_F_EXCL,
                seq,
                NFPROTO_INET,
            );
            w.str(1, &rs.table);
            w.str(2, &set.name);
            w.be32(4, i as u32 + 1);
            let list = w.nest(3);
            let per = 16 + key_len as usize;
            let mut room = ELEMENTS_MAX - 4;
            while room >= per {
                let Some(key) = keys.next() else { break };
                let e = w.nest(1);
                let k = w.nest(1);
                match key {
                    IpAddr::V4(a) => w.attr(1, &a.octets()),
                    IpAddr::V6(a) => w.attr(1, &a.octets()),
                }
                w.close(k);
                w.close(e);
                room -= per;
            }
            w.close(list);
            w.end(m);
            labels.push((seq, Label::Elements(i)));
            seq += 1;
        }
    }
    for (i, c) in rs.chains.iter().enumerate() {
        no_nul(&c.name)?;
        let m = w.nft(
            netlink::NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_ECHO,
            seq,
            NFPROTO_INET,
        );
        w.str(1, &rs.table);
        w.str(3, &c.name);
        let hook = w.nest(4);
        w.be32(
            1,
            match c.hook {
                Hook::Input => 1,
                Hook::Output => 3,
                Hook::Postrouting => 4,
                Hook::Prerouting => 0,
                Hook::Forward => 2,
            },
        );
        w.be32(2, c.priority as u32);
        w.close(hook);
        w.be32(5, NF_ACCEPT);
        w.str(
            7,
            match c.kind {
                ChainKind::Filter => "filter",
                ChainKind::Nat => "nat",
            },
        );
        w.end(m);
        labels.push((seq, Label::Chain(i)));
        seq += 1;
    }
    for (ci, c) in rs.chains.iter().enumerate() {
        for (ri, r) in c.rules.iter().enumerate() {
            let m = w.nft(
                netlink::NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND | NLM_F_EXCL | NLM_F_ECHO,
                seq,
                NFPROTO_INET,
            );
            w.str(1, &rs.table);
            w.str(2, &c.name);
            let exprs = w.nest(4);
            rule(&mut w, rs, &r.matches, r.counter, &r.action)?;
            w.close(exprs);
            w.end(m);
            labels.push((
                seq,
                Label::Rule {
                    chain: ci,
                    rule: ri,
                },
            ));
            seq += 1;
        }
    }
    // The last object message asks for the batch's one ACK.
    let last = labels
        .last()
        .map_or(0, |l| if l.0 >= BODY_SEQ { l.0 } else { 0 });
    if last != 0 {
        set_flag(&mut w.buf, last, NLM_F_ACK);
    }
    let end = w.begin(NFNL_MSG_BATCH_END, 0, seq, 0, netlink::NFNL_SUBSYS_NFTABLES);
    w.end(end);
    labels.push((seq, Label::Boundary));
    Ok((w.buf, last))
}

/// Sets `flag` on the message with sequence number `seq` in `buf`.
fn set_flag(buf: &mut [u8], seq: u32, flag: u16) {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
        let s = u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
        if s == seq {
            let f = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]) | flag;
            buf[off + 6..off + 8].copy_from_slice(&f.to_ne_bytes());
            return;
        }
        if len < 16 {
            return;
        }
        off += (len as usize + 3) & !3;
    }
}

/// The expressions of one rule, each `NFTA_LIST_ELEM { NAME, DATA { ... } }`.
struct Exprs<'a> {
    w: &'a mut Writer,
}

impl Exprs<'_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Writer)) {
        let e = self.w.nest(1);
        self.w.str(1, name);
        let d = self.w.nest(2);
        body(self.w);
        self.w.close(d);
        self.w.close(e);
    }

    /// `meta KEY` into register 1.
    fn meta(&mut self, key: u32) {
        self.expr("meta", |w| {
            w.be32(2, key);
            w.be32(1, NFT_REG_1);
        });
    }

    /// `cmp eq` of register 1 with `value`.
    fn cmp_eq(&mut self, value: &[u8]) {
        self.cmp(NFT_CMP_EQ, value);
    }

    /// `cmp OP` of register 1 with `value`.
    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |w| {
            w.be32(1, NFT_REG_1);
            w.be32(2, op);
            w.data(3, value);
        });
    }

    /// `ct KEY` into register 1.
    fn ct(&mut self, key: u32) {
        self.expr("ct", |w| {
            w.be32(2, key);
            w.be32(1, NFT_REG_1);
        });
    }

    /// `payload` of `len` bytes at `offset` of header `base` into register 1.
    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |w| {
            w.be32(1, NFT_REG_1);
            w.be32(2, base);
            w.be32(3, offset);
            w.be32(4, len);
        });
    }

    /// `bitwise`: register 1 &= `mask`.
    fn mask(&mut self, mask: &[u8]) {
        let zero = [0u8; 16];
        self.expr("bitwise", |w| {
            w.be32(1, NFT_REG_1);
            w.be32(2, NFT_REG_1);
            w.be32(3, mask.len() as u32);
            w.data(4, mask);
            w.data(5, &zero[..mask.len().min(16)]);
        });
    }

    /// `lookup` of register 1 in set `name` (batch-local id `id`).
    fn lookup(&mut self, name: &str, id: u32) {
        self.expr("lookup", |w| {
            w.be32(2, NFT_REG_1);
            w.str(1, name);
            w.be32(4, id);
        });
    }

    /// `immediate` `value` into register `reg`.
    fn immediate(&mut self, reg: u32, value: &[u8]) {
        self.expr("immediate", |w| {
            w.be32(1, reg);
            w.data(2, value);
        });
    }

    /// A verdict (`accept`, `return`).
    fn verdict(&mut self, code: u32) {
        self.expr("immediate", |w| {
            w.be32(1, NFT_REG_VERDICT);
            let data = w.nest(2);
            let verdict = w.nest(2);
            w.be32(1, code);
            w.close(verdict);
            w.close(data);
        });
    }
}

const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_CT_STATUS: u32 = 2;
const NFT_CT_DIRECTION: u32 = 1;
/// `IPS_DST_NAT`: the connection's destination was rewritten.
const IPS_DST_NAT: u32 = 0x20;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_SKUID: u32 = 10;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

/// The bytes an interface pattern is compared with: the name and its NUL, or for `name*`
/// the stem alone (a prefix match).
fn ifname_bytes(p: &IfPattern) -> Result<Vec<u8>, NulError> {
    no_nul(p.stem())?;
    let mut v = p.stem().as_bytes().to_vec();
    if !p.is_wildcard() {
        v.push(0);
    }
    Ok(v)
}

fn nfproto_value(f: Family) -> u8 {
    match f {
        Family::V4 => NFPROTO_IPV4,
        Family::V6 => NFPROTO_IPV6,
    }
}

/// The expressions of one rule. Dependencies (`meta nfproto`, `meta l4proto`) are added once
/// per rule, before the first payload load that needs them, as nft itself does.
fn rule(
    w: &mut Writer,
    rs: &Ruleset,
    matches: &[Match],
    counter: bool,
    action: &Action,
) -> Result<(), EncodeError> {
    let mut e = Exprs { w };
    let mut nfproto: Option<Family> = None;
    let mut l4: Option<u8> = None;
    let need_nfproto = |e: &mut Exprs<'_>, nfproto: &mut Option<Family>, f: Family| {
        if *nfproto != Some(f) {
            e.meta(NFT_META_NFPROTO);
            e.cmp_eq(&[nfproto_value(f)]);
            *nfproto = Some(f);
        }
    };
    let need_l4 = |e: &mut Exprs<'_>, l4: &mut Option<u8>, p: u8| {
        if *l4 != Some(p) {
            e.meta(NFT_META_L4PROTO);
            e.cmp_eq(&[p]);
            *l4 = Some(p);
        }
    };
    for m in matches {
        match m {
            Match::Oif(p) => {
                e.meta(NFT_META_OIFNAME);
                e.cmp_eq(&ifname_bytes(p)?);
            }
            Match::Iif(p) => {
                e.meta(NFT_META_IIFNAME);
                e.cmp_eq(&ifname_bytes(p)?);
            }
            Match::Nfproto(f) => need_nfproto(&mut e, &mut nfproto, *f),
            Match::L4proto(p) => need_l4(&mut e, &mut l4, *p),
            Match::Daddr(p) | Match::Saddr(p) => {
                let dst = matches!(m, Match::Daddr(_));
                let fam = family_of(&p.addr());
                let (offset, len) = match (fam, dst) {
                    (Family::V4, true) => (16, 4),
                    (Family::V4, false) => (12, 4),
                    (Family::V6, true) => (24, 16),
                    (Family::V6, false) => (8, 16),
                };
                need_nfproto(&mut e, &mut nfproto, fam);
                e.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len);
                if !p.is_host() {
                    e.mask(&p.mask_bytes());
                }
                match p.addr() {
                    IpAddr::V4(a) => e.cmp_eq(&a.octets()),
                    IpAddr::V6(a) => e.cmp_eq(&a.octets()),
                }
            }
            Match::DaddrIn(name, fam) => {
                need_nfproto(&mut e, &mut nfproto, *fam);
                match fam {
                    Family::V4 => e.payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4),
                    Family::V6 => e.payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16),
                }
                let id = rs
                    .sets
                    .iter()
                    .position(|s| s.name == *name && s.family == *fam)
                    .ok_or_else(|| EncodeError::UnknownSet(name.clone()))?;
                e.lookup(name, id as u32 + 1);
            }
            Match::Dport(proto, port) | Match::Sport(proto, port) => {
                let offset = if matches!(m, Match::Dport(..)) { 2 } else { 0 };
                need_l4(&mut e, &mut l4, proto.number());
                e.payload(NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2);
                e.cmp_eq(&port.to_be_bytes());
            }
            Match::HopLimit(h) => {
                need_nfproto(&mut e, &mut nfproto, Family::V6);
                e.payload(NFT_PAYLOAD_NETWORK_HEADER, 7, 1);
                e.cmp_eq(&[*h]);
            }
            Match::Icmpv6Type(t) => {
                need_l4(&mut e, &mut l4, crate::nft::ruleset::IPPROTO_ICMPV6);
                e.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
                e.cmp_eq(&[*t]);
            }
            Match::SkUid(uid) => {
                e.meta(NFT_META_SKUID);
                e.cmp_eq(&uid.to_ne_bytes());
            }
            // `ct status dnat`: the status word (host order), masked, compared with zero.
            Match::CtStatusDnat => {
                e.ct(NFT_CT_STATUS);
                e.mask(&IPS_DST_NAT.to_ne_bytes());
                e.cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes());
            }
            // `fib daddr type local`: the route type, a 32-bit value in host order.
            Match::DaddrLocal => {
                e.expr("fib", |w| {
                    w.be32(3, NFTA_FIB_F_DADDR);
                    w.be32(2, NFT_FIB_RESULT_ADDRTYPE);
                    w.be32(1, NFT_REG_1);
                });
                e.cmp_eq(&RTN_LOCAL.to_ne_bytes());
            }
            // `ct direction reply`: IP_CT_DIR_REPLY, one byte.
            Match::CtDirectionReply => {
                e.ct(NFT_CT_DIRECTION);
                e.cmp_eq(&[1]);
            }
        }
    }
    // A statement before the verdict: the counter of a refusing rule, with no attributes
    // (the kernel starts it at zero), as libnftnl sends it.
    if counter {
        e.expr("counter", |_| {});
    }
    match action {
        Action::Accept => e.verdict(NF_ACCEPT),
        Action::Drop => e.verdict(NF_DROP),
        Action::Return => e.verdict(NFT_RETURN),
        // ICMPX (type 2) port unreachable (code 1): the kernel translates it per family.
        Action::Reject => e.expr("reject", |w| {
            w.be32(1, 2);
            w.attr(2, &[1]);
        }),
        // TCP reset (type 1); nftnl sends code 0 with it.
        Action::RejectTcpReset => e.expr("reject", |w| {
            w.be32(1, 1);
            w.attr(2, &[0]);
        }),
        Action::Log { prefix, level } => {
            no_nul(prefix)?;
            e.expr("log", |w| {
                w.str(2, prefix);
                w.be32(5, *level);
            })
        }
        Action::Dnat(addr, port) => {
            e.immediate(NFT_REG_1, &addr.octets());
            e.immediate(NFT_REG_2, &port.to_be_bytes());
            e.expr("nat", |w| {
                w.be32(1, 1); // NFT_NAT_DNAT
                w.be32(2, u32::from(NFPROTO_IPV4));
                w.be32(3, NFT_REG_1);
                w.be32(5, NFT_REG_2);
            });
        }
        Action::Masquerade => e.expr("masq", |_| {}),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rulesets() -> Vec<Ruleset> {
        use crate::discovery::{Interface, Network, Prefix};
        use crate::policy::{LanMode, Policy, Profile};
        let prefix = |a: &str, l| Prefix::new(a.parse().unwrap(), l);
        let net = Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![prefix("127.0.0.1", 8)],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: vec![
                        prefix("192.168.1.10", 24),
                        prefix("fe80::1", 64),
                        prefix("2001:db8::5", 64),
                    ],
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: Some("eth0".into()),
            ipv6: true,
        };
        let gws: Vec<IpAddr> = [
            "199.58.81.145",
            "198.252.153.28",
            "2001:db8::7",
            "2001:db8::8",
        ]
        .iter()
        .map(|g| g.parse().unwrap())
        .collect();
        let mut out = Vec::new();
        for profile in [Profile::Default, Profile::Compat] {
            for lan in [LanMode::Private, LanMode::OnLink, LanMode::Off] {
                for debug in [false, true] {
                    let p = Policy::builder()
                        .gateways(gws.clone())
                        .profile(profile)
                        .lan(lan)
                        .debug(debug)
                        .build()
                        .unwrap();
                    out.push(crate::plan::plan(&p, &net).unwrap());
                }
            }
        }
        // Blocking, and forwarding (prerouting/forward chains, ct status dnat, fib daddr
        // type local, ct direction reply, drop), as planned.
        let block = Policy::builder()
            .mode(crate::policy::Mode::Block)
            .build()
            .unwrap();
        out.push(crate::plan::plan(&block, &net).unwrap());
        let fwd = Policy::builder()
            .gateways(gws.clone())
            .forward(true)
            .build()
            .unwrap();
        out.push(crate::plan::plan(&fwd, &net).unwrap());
        out.push(crate::email::plan(1000));
        // Every IR variant, whatever the planner uses today.
        use crate::nft::ruleset::{Chain, Rule};
        let mut every = crate::email::plan(1000);
        for (name, hook, kind, priority) in [
            ("pre", Hook::Prerouting, ChainKind::Nat, -100),
            ("fwd", Hook::Forward, ChainKind::Filter, 0),
            ("post", Hook::Postrouting, ChainKind::Filter, 0),
        ] {
            every.chains.push(Chain {
                name: name.into(),
                hook,
                kind,
                priority,
                rules: vec![
                    Rule::new([Match::CtStatusDnat], Action::Accept),
                    Rule::new([Match::DaddrLocal], Action::Return),
                    Rule::new([Match::CtDirectionReply], Action::Accept),
                    Rule::new(
                        [Match::Nfproto(Family::V4), Match::CtStatusDnat],
                        Action::Drop,
                    ),
                    Rule::new([], Action::Drop),
                ],
            });
        }
        out.push(every);
        out
    }

    #[test]
    fn oracle_large_and_create_and_remove() {
        let big: Vec<IpAddr> = (0..16_384u32)
            .map(|i| {
                if i % 2 == 0 {
                    IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i))
                } else {
                    IpAddr::from(std::net::Ipv6Addr::from(
                        0x2001_0db8_u128 << 96 | u128::from(i),
                    ))
                }
            })
            .collect();
        let p = crate::policy::Policy::builder()
            .gateways(big)
            .build()
            .unwrap();
        let net = crate::discovery::Network {
            ipv6: true,
            ..Default::default()
        };
        let rs = crate::plan::plan(&p, &net).unwrap();
        let split = |bytes: &[u8]| {
            let mut others = Vec::new();
            let mut keys: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
            for m in netlink::messages(bytes) {
                if m.nft_type() == Some(netlink::NFT_MSG_NEWSETELEM) {
                    let attrs = m.nft_attrs();
                    let set = netlink::find(&attrs, 2).unwrap().str().unwrap().to_string();
                    for e in netlink::find(&attrs, 3).unwrap().nested() {
                        keys.entry(set.clone()).or_default().push(
                            netlink::find(&netlink::find(&e.nested(), 1).unwrap().nested(), 1)
                                .unwrap()
                                .data
                                .to_vec(),
                        );
                    }
                } else {
                    others.push((
                        m.ty,
                        m.flags & !(NLM_F_ACK | NLM_F_ECHO),
                        netlink::canonical(m.payload.get(4..).unwrap_or(&[]), &|_, _| false),
                    ));
                }
            }
            (others, keys)
        };
        let old = crate::nft::encode_oracle::encode_create(&rs, "c")
            .unwrap()
            .bytes();
        let new = ruleset(&rs, Mode::Create, "c").unwrap().bytes();
        let (oa, ka) = split(&old);
        let (ob, kb) = split(&new);
        assert_eq!(oa.len(), ob.len());
        for (x, y) in oa.iter().zip(&ob) {
            assert_eq!(x, y);
        }
        assert_eq!(ka, kb);
        assert_eq!(ka.values().map(Vec::len).sum::<usize>(), 16_384);
        eprintln!(
            "old {} bytes {} msgs, new {} bytes {} msgs",
            old.len(),
            netlink::messages(&old).len(),
            new.len(),
            netlink::messages(&new).len()
        );
        let old = crate::nft::encode_oracle::encode_remove("bitmask")
            .unwrap()
            .bytes();
        let new = remove("bitmask").unwrap().bytes();
        let (oa, _) = split(&old);
        let (ob, _) = split(&new);
        assert_eq!(oa, ob);
    }

    #[test]
    fn oracle_same_as_libnftnl() {
        use crate::nft::encode_oracle as oracle;
        let owner = TableFlags::OWNER_PERSIST;
        for rs in rulesets() {
            let c = "the comment";
            let pairs = [
                (
                    oracle::encode_replace(&rs, c).unwrap(),
                    ruleset(&rs, Mode::Replace, c).unwrap(),
                ),
                (
                    oracle::encode_replace_flagged(&rs, c, owner.0).unwrap(),
                    ruleset_flagged(&rs, Mode::Replace, c, owner).unwrap(),
                ),
                (
                    oracle::encode_create_flagged(&rs, c, owner.0).unwrap(),
                    ruleset_flagged(&rs, Mode::Create, c, owner).unwrap(),
                ),
                (
                    oracle::encode_adopt(&rs.table, owner.0).unwrap(),
                    adopt(&rs.table, owner).unwrap(),
                ),
                (
                    oracle::encode_remove(&rs.table).unwrap(),
                    remove(&rs.table).unwrap(),
                ),
            ];
            for (old, new) in pairs {
                same_messages(&old.bytes(), &new.bytes());
            }
        }
    }

    /// Asserts that two batches hold the same messages (flags but ACK and echo, attributes,
    /// set elements in any order within a message).
    fn same_messages(old: &[u8], new: &[u8]) {
        {
            let (o, n) = (netlink::messages(old), netlink::messages(new));
            assert_eq!(o.len(), n.len(), "message count");
            for (i, (a, b)) in o.iter().zip(&n).enumerate() {
                eprintln!(
                    "msg {i}: type {:x}/{:x} flags {:x}/{:x} seq {}/{}",
                    a.ty, b.ty, a.flags, b.flags, a.seq, b.seq
                );
                assert_eq!(a.ty, b.ty, "type of message {i}");
                let mask = !(NLM_F_ACK | NLM_F_ECHO);
                assert_eq!(a.flags & mask, b.flags & mask, "flags of message {i}");
                if a.nft_type() == Some(netlink::NFT_MSG_NEWSETELEM) {
                    let keys = |m: &netlink::Message<'_>| {
                        let attrs = m.nft_attrs();
                        let list = netlink::find(&attrs, 3).unwrap();
                        let k: Vec<Vec<u8>> = list
                            .nested()
                            .iter()
                            .map(|e| {
                                netlink::find(&netlink::find(&e.nested(), 1).unwrap().nested(), 1)
                                    .unwrap()
                                    .data
                                    .to_vec()
                            })
                            .collect();
                        let rest: Vec<_> = attrs
                            .iter()
                            .filter(|x| x.ty != 3)
                            .map(|x| (x.ty, x.data.to_vec()))
                            .collect();
                        (k, rest)
                    };
                    let (mut ka, mut ra) = keys(a);
                    let (mut kb, mut rb) = keys(b);
                    ka.sort();
                    kb.sort();
                    ra.sort();
                    rb.sort();
                    assert_eq!((ka, ra), (kb, rb), "elements of message {i}");
                    continue;
                }
                // libnftnl leaves stale bytes in some padding; ours is zero.
                let same = a.payload.len() == b.payload.len()
                    && a.payload
                        .iter()
                        .zip(b.payload)
                        .all(|(x, y)| x == y || *y == 0)
                    && netlink::canonical(&a.payload[4..], &|_, _| false)
                        == netlink::canonical(&b.payload[4..], &|_, _| false);
                assert!(
                    same,
                    "payload of message {i} ({:?})\n{:?}\n{:?}",
                    b.nft_type(),
                    a.payload,
                    b.payload
                );
            }
        }
    }

    #[test]
    fn attributes_are_aligned_and_nested_lengths_cover_their_contents() {
        let mut w = Writer::with_capacity(64);
        let m = w.nft(netlink::NFT_MSG_NEWTABLE, 0, 7, NFPROTO_INET);
        w.str(1, "ab");
        let n = w.nest(4);
        w.be32(1, 3);
        w.close(n);
        w.end(m);
        assert_eq!(w.buf.len() % 4, 0);
        let msgs = netlink::messages(&w.buf);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 7);
        assert_eq!(msgs[0].flags, NLM_F_REQUEST);
        let a = msgs[0].nft_attrs();
        assert_eq!(a[0].str(), Some("ab"));
        assert_eq!(a[1].nested()[0].be_u32(), Some(3));
    }
}
