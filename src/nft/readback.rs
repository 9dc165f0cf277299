//! Reading a table back from the kernel, and the fingerprint that says whether it is still
//! exactly what was applied.
//!
//! A [`Snapshot`] is a canonical text of a table's chains, rules and set elements. It is made
//! two ways: from the kernel's dump ([`read_table`]) and from the batch we would send for a
//! planned [`Ruleset`] ([`snapshot_of`]). Both pass through the same netlink parser, and the
//! few attributes the kernel adds on its own (defaults such as a lookup's flags) are left out,
//! so an untouched table gives the same [`Fingerprint`] as its plan.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::nft::netlink::{self, Attr};
use crate::nft::ruleset::Ruleset;
use crate::nft::transport::{self, Generation, TableFlags, TransportError};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NFPROTO_INET: u8 = 1;

/// A 64-bit FNV-1a hash of a [`Snapshot`]; printed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

/// A canonical view of a table's contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Per chain: its header (hook, priority, type, policy) and its rules in order.
    pub chains: BTreeMap<String, (String, Vec<String>)>,
    /// Per set: its declaration and its sorted elements.
    pub sets: BTreeMap<String, (String, Vec<String>)>,
}

impl Snapshot {
    /// The fingerprint of this snapshot.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |s: &str| {
            for b in s.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (name, (head, rules)) in &self.chains {
            eat("chain");
            eat(name);
            eat(head);
            for r in rules {
                eat(r);
            }
        }
        for (name, (decl, elems)) in &self.sets {
            eat("set");
            eat(name);
            eat(decl);
            for e in elems {
                eat(e);
            }
        }
        Fingerprint(h)
    }

    /// A short, human explanation of how `self` (the kernel) differs from `expected`.
    pub fn describe_difference(&self, expected: &Snapshot) -> String {
        for (name, (head, rules)) in &expected.chains {
            match self.chains.get(name) {
                None => return format!("chain {name} is missing"),
                Some((h, _)) if h != head => return format!("chain {name} is hooked differently"),
                Some((_, r)) if r.len() != rules.len() => {
                    return format!(
                        "chain {name} holds {} rules where {} belong",
                        r.len(),
                        rules.len()
                    )
                }
                Some((_, r)) => {
                    if let Some(i) = r.iter().zip(rules).position(|(a, b)| a != b) {
                        return format!("rule {} of chain {name} differs", i + 1);
                    }
                }
            }
        }
        if let Some(extra) = self
            .chains
            .keys()
            .find(|k| !expected.chains.contains_key(*k))
        {
            return format!("an unexpected chain {extra} was added");
        }
        for (name, (_, elems)) in &expected.sets {
            match self.sets.get(name) {
                None => return format!("set {name} is missing"),
                Some((_, e)) if e != elems => {
                    let missing = elems.iter().filter(|x| !e.contains(x)).count();
                    let extra = e.iter().filter(|x| !elems.contains(x)).count();
                    return format!(
                        "set {name} holds {} elements where {} belong ({missing} missing, {extra} not planned)",
                        e.len(),
                        elems.len()
                    );
                }
                _ => {}
            }
        }
        if let Some(extra) = self.sets.keys().find(|k| !expected.sets.contains_key(*k)) {
            return format!("an unexpected set {extra} was added");
        }
        "the table differs from its plan".to_string()
    }
}

/// Which expression attributes are the kernel's own additions or defaults, by expression name
/// and attribute type (`NFTA_*` numbers of that expression).
fn kernel_added(expr: &str, path: &[u16], data: &[u8]) -> bool {
    match (expr, path) {
        // ICMP_CODE: nftnl sends 0 with a TCP reset, the kernel dumps none (we never reject
        // with ICMPX code 0).
        ("reject", [2]) => data.iter().all(|b| *b == 0),
        ("lookup", [4]) | ("lookup", [5]) => true, // SET_ID (ours only), FLAGS (kernel's)
        ("nat", [4]) | ("nat", [6]) | ("nat", [7]) => true, // ADDR_MAX, PROTO_MAX, FLAGS
        ("bitwise", [6]) => true,                  // OP (boolean, the default)
        ("log", [6]) => true,                      // FLAGS
        ("masq", [1]) => true,                     // FLAGS
        ("counter", _) => true,
        _ => false,
    }
}

fn expressions(data: &[u8]) -> String {
    let mut out = Vec::new();
    for elem in netlink::attrs(data) {
        let parts = elem.nested();
        let name = netlink::find(&parts, 1)
            .and_then(|a| a.str())
            .unwrap_or("?")
            .to_string();
        // A counter's values change with traffic and say nothing about the rule: the kernel
        // dumps them, the batch carries none, so a counter is its name alone.
        let body = match name.as_str() {
            "counter" => String::new(),
            _ => netlink::find(&parts, 2)
                .map(|d| netlink::canonical(d.data, &|p, v| kernel_added(&name, p, v)))
                .unwrap_or_default(),
        };
        out.push(format!("{name}{body}"));
    }
    out.join(" ")
}

fn attr_str(attrs: &[Attr<'_>], ty: u16) -> String {
    netlink::find(attrs, ty)
        .and_then(|a| a.str())
        .unwrap_or_default()
        .to_string()
}

fn attr_canon(attrs: &[Attr<'_>], ty: u16) -> String {
    netlink::find(attrs, ty)
        .map(|a| netlink::canonical(a.data, &|_, _| false))
        .unwrap_or_default()
}

/// Adds one NEWCHAIN/NEWRULE/NEWSET/NEWSETELEM message to a snapshot (others are ignored).
fn absorb(snap: &mut Snapshot, msg: &netlink::Message<'_>) {
    let a = msg.nft_attrs();
    match msg.nft_type() {
        Some(netlink::NFT_MSG_NEWCHAIN) => {
            // NAME 3, HOOK 4, POLICY 5, TYPE 7
            let head = format!(
                "hook{} policy{} type{}",
                attr_canon(&a, 4),
                attr_canon(&a, 5),
                attr_str(&a, 7)
            );
            snap.chains.entry(attr_str(&a, 3)).or_default().0 = head;
        }
        Some(netlink::NFT_MSG_NEWRULE) => {
            // CHAIN 2, EXPRESSIONS 4
            let exprs = netlink::find(&a, 4)
                .map(|e| expressions(e.data))
                .unwrap_or_default();
            snap.chains
                .entry(attr_str(&a, 2))
                .or_default()
                .1
                .push(exprs);
        }
        Some(netlink::NFT_MSG_NEWSET) => {
            // NAME 2, KEY_LEN 5
            let decl = format!("keylen{}", attr_canon(&a, 5));
            snap.sets.entry(attr_str(&a, 2)).or_default().0 = decl;
        }
        Some(netlink::NFT_MSG_NEWSETELEM) => {
            // SET 2, ELEMENTS 3
            let set = attr_str(&a, 2);
            let entry = &mut snap.sets.entry(set).or_default().1;
            entry.extend(element_keys(&a).into_iter().map(hex));
        }
        _ => {}
    }
}

/// The keys of the elements in a NEWSETELEM message's attributes (ELEMENTS 3 -> LIST_ELEM
/// -> KEY 1 -> VALUE 1).
fn element_keys<'a>(attrs: &[Attr<'a>]) -> Vec<&'a [u8]> {
    let Some(list) = netlink::find(attrs, 3) else {
        return Vec::new();
    };
    list.nested()
        .iter()
        .filter_map(|elem| {
            let key = netlink::find(&elem.nested(), 1)?;
            netlink::find(&key.nested(), 1).map(|v| v.data)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ip_hex(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => hex(&a.octets()),
        IpAddr::V6(a) => hex(&a.octets()),
    }
}

/// The snapshot the kernel would hold after applying `rs`. Pure (encodes in memory).
pub fn snapshot_of(rs: &Ruleset) -> Result<Snapshot, TransportError> {
    let enc = transport::encode_objects(rs)?;
    let bytes = enc.bytes();
    let mut snap = Snapshot::default();
    for msg in netlink::messages(&bytes) {
        absorb(&mut snap, &msg);
    }
    for set in &rs.sets {
        let mut elems: Vec<String> = set.elements.iter().map(ip_hex).collect();
        elems.sort();
        snap.sets.entry(set.name.clone()).or_default().1 = elems;
    }
    Ok(snap)
}

/// A table as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTable {
    /// The table comment, if it has one.
    pub comment: Option<String>,
    /// Its contents.
    pub snapshot: Snapshot,
    /// The elements of each set, as addresses.
    pub set_elements: BTreeMap<String, Vec<IpAddr>>,
}

fn table_comment(udata: &[u8]) -> Option<String> {
    // nft's user-data TLV: type (0 = comment), length, bytes (NUL-terminated).
    let mut off = 0;
    while off + 2 <= udata.len() {
        let (ty, len) = (udata[off], udata[off + 1] as usize);
        let val = udata.get(off + 2..off + 2 + len)?;
        if ty == 0 {
            let v = val.strip_suffix(&[0]).unwrap_or(val);
            return String::from_utf8(v.to_vec()).ok();
        }
        off += 2 + len;
    }
    None
}

fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The kernel's message for table `inet NAME` (empty when it does not exist).
fn get_table(name: &str) -> Result<Vec<Vec<u8>>, TransportError> {
    let get = netlink::nft_request(
        netlink::NFT_MSG_GETTABLE,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        NFPROTO_INET,
        &[(1, &netlink::cstr(name))],
    );
    transport::dump(&get, "the table")
}

/// Whether table `inet NAME` exists (one small request).
pub fn table_exists(name: &str) -> Result<bool, TransportError> {
    Ok(!get_table(name)?.is_empty())
}

/// Who holds a table: its flags and, while it has the owner flag, the netlink port id of the
/// owning socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// `NFTA_TABLE_FLAGS`.
    pub flags: TableFlags,
    /// `NFTA_TABLE_OWNER`: the owner's netlink port id, present only while owned.
    pub owner: Option<u32>,
}

impl Ownership {
    /// Owned by a live socket: only that socket may change or delete the table.
    pub fn is_owned(&self) -> bool {
        self.flags.contains(TableFlags::OWNER)
    }
    /// Persisted without an owner: the socket that owned it closed and the kernel kept the
    /// table; any root process may change it again, or take it over.
    pub fn is_orphaned(&self) -> bool {
        self.flags.contains(TableFlags::PERSIST) && !self.is_owned()
    }
}

/// Reads the flags and owner of table `inet NAME` (one small request); `None` when it does not
/// exist.
pub fn ownership(name: &str) -> Result<Option<Ownership>, TransportError> {
    Ok(get_table(name)?
        .first()
        .and_then(|raw| ownership_in(raw, name)))
}

/// The comment of table `inet NAME` (one small request); `None` when the table does not
/// exist or has none.
pub fn comment(name: &str) -> Result<Option<String>, TransportError> {
    Ok(get_table(name)?.first().and_then(|raw| {
        netlink::messages(raw).into_iter().find_map(|msg| {
            let a = msg.nft_attrs();
            (attr_str(&a, 1) == name)
                .then(|| netlink::find(&a, 6).and_then(|u| table_comment(u.data)))
                .flatten()
        })
    }))
}

/// The flags and owner in a NEWTABLE message for table `name`.
pub fn ownership_in(raw: &[u8], name: &str) -> Option<Ownership> {
    netlink::messages(raw).into_iter().find_map(|msg| {
        let a = msg.nft_attrs();
        (attr_str(&a, 1) == name).then(|| Ownership {
            // FLAGS 2, OWNER 7 (both big-endian u32)
            flags: TableFlags(netlink::find(&a, 2).and_then(|f| f.be_u32()).unwrap_or(0)),
            owner: netlink::find(&a, 7).and_then(|o| o.be_u32()),
        })
    })
}

/// A table read back whole at one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// The table, `None` when it does not exist.
    pub table: Option<KernelTable>,
    /// The generation every part of it was read at.
    pub generation: Generation,
}

/// How many times [`read_table_at`] reads a table that keeps changing before it gives up.
const READ_ATTEMPTS: u32 = 5;

/// Reads table `inet NAME` back from the kernel of the calling thread's namespace; `None` when
/// it does not exist. Consistent as [`read_table_at`] says.
pub fn read_table(name: &str) -> Result<Option<KernelTable>, TransportError> {
    Ok(read_table_at(name)?.table)
}

/// Reads table `inet NAME` back, every part of it (table, chains, rules, sets, elements) at
/// one generation: each reply carries the generation it was made at, and the read is taken
/// only when they all match the generation the kernel reports after it; otherwise it is read
/// again, up to [`READ_ATTEMPTS`] times.
pub fn read_table_at(name: &str) -> Result<ReadBack, TransportError> {
    for _ in 0..READ_ATTEMPTS {
        let (table, seen) = read_once(name)?;
        let generation = transport::generation()?;
        if seen.iter().all(|r| *r == generation.res_id()) {
            return Ok(ReadBack { table, generation });
        }
    }
    Err(TransportError::Unsettled {
        table: name.to_string(),
        attempts: READ_ATTEMPTS,
    })
}

/// The `res_id` (generation, low 16 bits) of each message of a reply.
fn res_ids(raw: &[u8]) -> impl Iterator<Item = u16> + '_ {
    netlink::messages(raw)
        .into_iter()
        .filter_map(|m| m.nft_res_id())
}

/// One read of the table, and the generations its replies were made at.
fn read_once(name: &str) -> Result<(Option<KernelTable>, Vec<u16>), TransportError> {
    let cname = netlink::cstr(name);
    let tables = get_table(name)?;
    let Some(table_msg) = tables.first() else {
        return Ok((None, Vec::new()));
    };
    let mut seen: Vec<u16> = res_ids(table_msg).collect();
    let mut comment = None;
    for msg in netlink::messages(table_msg) {
        let a = msg.nft_attrs();
        if attr_str(&a, 1) == name {
            comment = netlink::find(&a, 6).and_then(|u| table_comment(u.data));
        }
    }
    let mut snap = Snapshot::default();
    let mut set_elements: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let requests: [(u16, u16, &'static str); 3] = [
        (netlink::NFT_MSG_GETCHAIN, 1, "the chains"),
        (netlink::NFT_MSG_GETRULE, 1, "the rules"),
        (netlink::NFT_MSG_GETSET, 1, "the sets"),
    ];
    for (ty, table_attr, what) in requests {
        let req = netlink::nft_request(
            ty,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            NFPROTO_INET,
            &[(table_attr, &cname)],
        );
        for raw in transport::dump(&req, what)? {
            seen.extend(res_ids(&raw));
            for msg in netlink::messages(&raw) {
                let a = msg.nft_attrs();
                if attr_str(&a, 1) == name {
                    absorb(&mut snap, &msg);
                }
            }
        }
    }
    let set_names: Vec<String> = snap.sets.keys().cloned().collect();
    for set in set_names {
        let cset = netlink::cstr(&set);
        let req = netlink::nft_request(
            netlink::NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            NFPROTO_INET,
            &[(1, &cname), (2, &cset)],
        );
        for raw in transport::dump(&req, "the set elements")? {
            seen.extend(res_ids(&raw));
            for msg in netlink::messages(&raw) {
                absorb(&mut snap, &msg);
                let a = msg.nft_attrs();
                let ips = element_keys(&a).into_iter().filter_map(parse_ip);
                set_elements.entry(set.clone()).or_default().extend(ips);
            }
        }
        if let Some(entry) = snap.sets.get_mut(&set) {
            entry.1.sort();
        }
    }
    for v in set_elements.values_mut() {
        v.sort();
    }
    Ok((
        Some(KernelTable {
            comment,
            snapshot: snap,
            set_elements,
        }),
        seen,
    ))
}

/// The text stored as a table's comment: the record, then the rules' fingerprint.
pub fn comment_for(record: &str, fp: Fingerprint) -> String {
    format!("{record}; rules {fp}")
}

/// Splits a comment made by [`comment_for`].
pub fn split_comment(comment: &str) -> Option<(&str, Fingerprint)> {
    let (record, fp) = comment.rsplit_once("; rules ")?;
    Some((record, fp.parse().ok()?))
}
