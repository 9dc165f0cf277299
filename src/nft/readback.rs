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

use crate::nft::encode;
use crate::nft::netlink::{self, Attr};
use crate::nft::ruleset::Ruleset;
use crate::nft::transport::{Generation, Session, TableFlags, TransportError};

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

/// 64-bit FNV-1a over strings, each followed by 0xff.
struct Fnv(u64);

impl Fnv {
    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn eat(&mut self, s: &str) {
        for b in s.bytes() {
            self.byte(b);
        }
        self.byte(0xff);
    }

    /// As [`Fnv::eat`] of the bytes' lowercase hex, without making the string.
    fn eat_hex(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            self.byte(HEX[usize::from(b >> 4)]);
            self.byte(HEX[usize::from(b & 15)]);
        }
        self.byte(0xff);
    }
}

/// A canonical view of a table's contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Per chain: its header (hook, priority, type, policy) and its rules in order.
    pub chains: BTreeMap<String, (String, Vec<String>)>,
    /// Per set: its declaration and its sorted element keys.
    pub sets: BTreeMap<String, (String, Vec<Key>)>,
}

/// A set element's key, as the kernel holds it: the 4 bytes of an IPv4 address or the 16 of
/// an IPv6 address, kept inline (no allocation per element). Keys sort as their bytes do.
///
/// A key longer than 16 bytes (never in a set of ours: the kernel makes every key of a set
/// as long as the set declares, and our sets declare 4 or 16) keeps its first 16 bytes and
/// its length, so it can never equal a key of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The bytes, big-endian and padded with zeros on the right: integers order as the bytes.
    value: u128,
    len: u8,
}

impl Key {
    /// The key of these bytes.
    pub fn new(data: &[u8]) -> Key {
        let mut bytes = [0u8; 16];
        let n = data.len().min(16);
        bytes[..n].copy_from_slice(&data[..n]);
        Key {
            value: u128::from_be_bytes(bytes),
            len: data.len().min(255) as u8,
        }
    }

    /// The key of an address.
    pub fn of(ip: &IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => Key::new(&a.octets()),
            IpAddr::V6(a) => Key::new(&a.octets()),
        }
    }

    /// The bytes held (at most 16) and how many they are.
    fn held(&self) -> ([u8; 16], usize) {
        (self.value.to_be_bytes(), usize::from(self.len).min(16))
    }

    /// The address it holds, when it is 4 or 16 bytes long.
    pub fn ip(&self) -> Option<IpAddr> {
        let (b, _) = self.held();
        match self.len {
            4 => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
            16 => Some(IpAddr::from(b)),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    /// The key in hex, as the fingerprint reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, n) = self.held();
        for x in &b[..n] {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// The fingerprint of this snapshot.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        for (name, (head, rules)) in &self.chains {
            h.eat("chain");
            h.eat(name);
            h.eat(head);
            for r in rules {
                h.eat(r);
            }
        }
        for (name, (decl, elems)) in &self.sets {
            h.eat("set");
            h.eat(name);
            h.eat(decl);
            for e in elems {
                let (b, n) = e.held();
                h.eat_hex(&b[..n]);
            }
        }
        Fingerprint(h.0)
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
                    // Both are sorted.
                    let missing = elems.iter().filter(|x| e.binary_search(x).is_err()).count();
                    let extra = e.iter().filter(|x| elems.binary_search(x).is_err()).count();
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
        // ICMP_CODE: we (as nftnl) send 0 with a TCP reset, the kernel dumps none (we never reject
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
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut path = Vec::with_capacity(8);
    for (i, elem) in netlink::attr_iter(data).enumerate() {
        let name = netlink::find_in(elem.data, 1)
            .and_then(|a| a.str())
            .unwrap_or("?");
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
        // A counter's values change with traffic and say nothing about the rule: the kernel
        // dumps them, the batch carries none, so a counter is its name alone.
        if name != "counter" {
            if let Some(d) = netlink::find_in(elem.data, 2) {
                netlink::canonical_bytes(&mut out, d.data, &mut path, &|p, v| {
                    kernel_added(name, p, v)
                });
            }
        }
    }
    // Hex, digits, punctuation and the names, which are UTF-8.
    String::from_utf8(out).unwrap_or_default()
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
            let chain = netlink::find(&a, 2)
                .and_then(|c| c.str())
                .unwrap_or_default();
            match snap.chains.get_mut(chain) {
                Some(c) => c.1.push(exprs),
                None => {
                    snap.chains
                        .insert(chain.to_string(), (String::new(), vec![exprs]));
                }
            }
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
            for_each_key(&a, &mut |k| entry.push(Key::new(k)));
        }
        _ => {}
    }
}

/// The keys of the elements in a NEWSETELEM message's attributes (ELEMENTS 3 -> LIST_ELEM
/// -> KEY 1 -> VALUE 1).
fn for_each_key<'a>(attrs: &[Attr<'a>], on_key: &mut dyn FnMut(&'a [u8])) {
    let Some(list) = netlink::find(attrs, 3) else {
        return;
    };
    for elem in netlink::attr_iter(list.data) {
        let value = netlink::find_in(elem.data, 1).and_then(|k| netlink::find_in(k.data, 1));
        if let Some(v) = value {
            on_key(v.data);
        }
    }
}

/// The snapshot the kernel would hold after applying `rs`. Pure (encodes in memory).
pub fn snapshot_of(rs: &Ruleset) -> Result<Snapshot, TransportError> {
    let contents = encode::contents(rs)?;
    Ok(expected_snapshot(rs, &contents))
}

/// The snapshot the kernel would hold after applying `rs`, whose contents (sets, chains,
/// rules, as [`encode::contents`] or [`crate::nft::encode::Encoded::body`] give them) are
/// `contents`: the objects from the messages, the elements from the ruleset.
pub fn expected_snapshot(rs: &Ruleset, contents: &[u8]) -> Snapshot {
    let mut snap = Snapshot::default();
    for msg in netlink::messages(contents) {
        if msg.nft_type() != Some(netlink::NFT_MSG_NEWSETELEM) {
            absorb(&mut snap, &msg);
        }
    }
    for set in &rs.sets {
        let mut elems: Vec<Key> = set.elements.iter().map(Key::of).collect();
        elems.sort_unstable();
        snap.sets.entry(set.name.clone()).or_default().1 = elems;
    }
    snap
}

/// A table as the kernel echoed it while committing a batch that created it
/// ([`Session::commit_echo`]): the same messages a dump of the table gives, each object
/// as it was committed; set elements are not echoed ([`crate::nft::encode`]).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    name: String,
    table: Option<KernelTable>,
    complete: bool,
}

impl Echo {
    /// Collects the echo of a batch that creates (or replaces) table `inet NAME`.
    pub fn new(name: &str) -> Echo {
        Echo {
            name: name.to_string(),
            table: None,
            complete: true,
        }
    }

    /// Takes one echoed message. A new table starts the account over (the replacing batch's
    /// first add echoes the table it may create before it is deleted); anything deleted from
    /// our table makes the echo unusable.
    pub fn absorb(&mut self, msg: &netlink::Message<'_>) {
        let a = msg.nft_attrs();
        let ty = msg.nft_type();
        // Attribute 1 names the table in table, chain, rule, set and element messages.
        if attr_str(&a, 1) != self.name {
            return;
        }
        match ty {
            Some(netlink::NFT_MSG_NEWTABLE) => {
                let comment = netlink::find(&a, 6).and_then(|u| table_comment(u.data));
                self.table = Some(KernelTable {
                    comment,
                    snapshot: Snapshot::default(),
                    set_elements: BTreeMap::new(),
                });
            }
            Some(
                netlink::NFT_MSG_NEWCHAIN | netlink::NFT_MSG_NEWRULE | netlink::NFT_MSG_NEWSET,
            ) => match &mut self.table {
                Some(t) => absorb(&mut t.snapshot, msg),
                None => self.complete = false,
            },
            // Elements are read by a dump ([`read_elements_on`]).
            Some(netlink::NFT_MSG_NEWSETELEM) => {}
            _ => self.complete = false,
        }
    }

    /// The table as echoed, without set elements (read them with [`read_elements_on`]);
    /// `None` when the echo does not account for the whole table.
    pub fn finish(self) -> Option<KernelTable> {
        self.table.filter(|_| self.complete)
    }
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

/// Hands the kernel's message for table `inet NAME` (none when it does not exist) to
/// `on_msg`.
fn get_table(
    conn: &mut Session,
    name: &str,
    on_msg: &mut dyn FnMut(&netlink::Message<'_>),
) -> Result<(), TransportError> {
    conn.get(
        netlink::NFT_MSG_GETTABLE,
        NFPROTO_INET,
        &[(1, &netlink::cstr(name))],
        "the table",
        on_msg,
    )
}

/// Whether table `inet NAME` exists (one small request on a connection of its own).
pub fn table_exists(name: &str) -> Result<bool, TransportError> {
    table_exists_on(&mut Session::open()?, name)
}

/// Whether table `inet NAME` exists (one small request).
pub fn table_exists_on(conn: &mut Session, name: &str) -> Result<bool, TransportError> {
    let mut found = false;
    get_table(conn, name, &mut |_| found = true)?;
    Ok(found)
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
    let mut found = None;
    get_table(&mut Session::open()?, name, &mut |m| {
        found = found.or_else(|| ownership_in(m.raw, name))
    })?;
    Ok(found)
}

/// The comment of table `inet NAME` (one small request); `None` when the table does not
/// exist or has none.
pub fn comment(name: &str) -> Result<Option<String>, TransportError> {
    let mut found = None;
    get_table(&mut Session::open()?, name, &mut |msg| {
        let a = msg.nft_attrs();
        if found.is_none() && attr_str(&a, 1) == name {
            found = netlink::find(&a, 6).and_then(|u| table_comment(u.data));
        }
    })?;
    Ok(found)
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
/// again, up to [`READ_ATTEMPTS`] times. One connection of its own.
pub fn read_table_at(name: &str) -> Result<ReadBack, TransportError> {
    read_table_on(&mut Session::open()?, name)
}

/// [`read_table_at`] on an open connection.
pub fn read_table_on(conn: &mut Session, name: &str) -> Result<ReadBack, TransportError> {
    for _ in 0..READ_ATTEMPTS {
        let (table, seen, consistent) = read_once(conn, name)?;
        let generation = conn.generation()?;
        if consistent && seen.iter().all(|r| *r == generation.res_id()) {
            return Ok(ReadBack { table, generation });
        }
    }
    Err(TransportError::Unsettled {
        table: name.to_string(),
        attempts: READ_ATTEMPTS,
    })
}

/// One read of the table, the generations its replies were made at, and whether the kernel
/// vouched for every dump (none was marked interrupted).
fn read_once(
    conn: &mut Session,
    name: &str,
) -> Result<(Option<KernelTable>, Vec<u16>, bool), TransportError> {
    let mut all_consistent = true;
    let cname = netlink::cstr(name);
    let mut seen: Vec<u16> = Vec::new();
    let mut comment = None;
    let mut exists = false;
    get_table(conn, name, &mut |msg| {
        exists = true;
        seen.extend(msg.nft_res_id());
        let a = msg.nft_attrs();
        if attr_str(&a, 1) == name {
            comment = netlink::find(&a, 6).and_then(|u| table_comment(u.data));
        }
    })?;
    if !exists {
        return Ok((None, Vec::new(), true));
    }
    let mut snap = Snapshot::default();
    let requests: [(u16, &'static str); 3] = [
        (netlink::NFT_MSG_GETCHAIN, "the chains"),
        (netlink::NFT_MSG_GETRULE, "the rules"),
        (netlink::NFT_MSG_GETSET, "the sets"),
    ];
    for (ty, what) in requests {
        let consistent = conn.dump_with(ty, NFPROTO_INET, &[(1, &cname)], what, &mut |msg| {
            seen.extend(msg.nft_res_id());
            if attr_str(&msg.nft_attrs(), 1) == name {
                absorb(&mut snap, msg);
            }
        })?;
        all_consistent &= consistent;
    }
    let mut table = KernelTable {
        comment,
        snapshot: snap,
        set_elements: BTreeMap::new(),
    };
    let (elements_seen, consistent) = read_elements_on(conn, name, &mut table)?;
    seen.extend(elements_seen);
    all_consistent &= consistent;
    Ok((Some(table), seen, all_consistent))
}

/// Reads the elements of every set of `table` (one dump per set) into it, replacing any it
/// held. Returns the generations the replies were made at (`res_id`), and whether the kernel
/// vouched for every dump.
pub fn read_elements_on(
    conn: &mut Session,
    name: &str,
    table: &mut KernelTable,
) -> Result<(Vec<u16>, bool), TransportError> {
    let cname = netlink::cstr(name);
    let mut seen = Vec::new();
    let mut all_consistent = true;
    table.set_elements.clear();
    for (set, (_, keys)) in table.snapshot.sets.iter_mut() {
        keys.clear();
        let consistent = conn.dump_with(
            netlink::NFT_MSG_GETSETELEM,
            NFPROTO_INET,
            &[(1, &cname), (2, &netlink::cstr(set))],
            "the set elements",
            &mut |msg| {
                seen.extend(msg.nft_res_id());
                for_each_key(&msg.nft_attrs(), &mut |k| keys.push(Key::new(k)));
            },
        )?;
        all_consistent &= consistent;
        keys.sort_unstable();
        // Keys of one length sort as their addresses do.
        let ips: Vec<IpAddr> = keys.iter().filter_map(Key::ip).collect();
        if !ips.is_empty() {
            table.set_elements.insert(set.clone(), ips);
        }
    }
    Ok((seen, all_consistent))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::encode::{self, Mode};

    /// The batch's own messages stand in for the kernel's echo: they carry the same
    /// attributes the kernel's notifications do.
    fn echo_of(rs: &Ruleset, comment: &str) -> Echo {
        let enc = encode::ruleset(rs, Mode::Replace, comment).expect("encode");
        let bytes = enc.bytes();
        let mut echo = Echo::new(&rs.table);
        for m in netlink::messages(&bytes) {
            if m.nft_type().is_some() && m.nft_type() != Some(2) {
                echo.absorb(&m);
            }
        }
        echo
    }

    #[test]
    fn an_echo_accounts_for_the_table_sets_chains_and_rules() {
        let rs = crate::email::plan(1000);
        let table = echo_of(&rs, "the comment").finish().expect("complete");
        assert_eq!(table.comment.as_deref(), Some("the comment"));
        assert_eq!(table.snapshot, snapshot_of(&rs).expect("snapshot"));
        assert!(table.set_elements.is_empty());
    }

    #[test]
    fn an_echo_without_the_table_or_with_a_deletion_is_not_used() {
        let rs = crate::email::plan(1000);
        // Objects without their table first: not an account of a new table.
        let enc = encode::ruleset(&rs, Mode::Create, "c").expect("encode");
        let mut echo = Echo::new(&rs.table);
        for m in netlink::messages(enc.body()) {
            echo.absorb(&m);
        }
        assert!(echo.finish().is_none());
        // A deletion echoed for our table.
        let mut echo = echo_of(&rs, "c");
        let del = netlink::nft_request(8, 0, 9, 1, &[(1, &netlink::cstr(&rs.table))]);
        echo.absorb(&netlink::messages(&del)[0]);
        assert!(echo.finish().is_none());
        // Another table's objects are ignored.
        let mut echo = echo_of(&rs, "c");
        let other = netlink::nft_request(8, 0, 9, 1, &[(1, &netlink::cstr("other"))]);
        echo.absorb(&netlink::messages(&other)[0]);
        assert!(echo.finish().is_some());
    }

    #[test]
    fn keys_order_and_print_as_their_bytes() {
        let a = Key::new(&[10, 0, 0, 2]);
        let b = Key::new(&[9, 255, 255, 255]);
        assert!(b < a);
        assert_eq!(a.to_string(), "0a000002");
        assert_eq!(a.ip(), Some("10.0.0.2".parse().unwrap()));
        let long = Key::new(&[1; 20]);
        assert_eq!(long.ip(), None);
        assert_ne!(long, Key::new(&[1; 16]));
    }
}
