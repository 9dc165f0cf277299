//! The ruleset: the small intermediate form that every table goes through.
//!
//! A [`Ruleset`] is one `inet` table with named sets and base chains holding [`Rule`]s made of
//! [`Match`]es and an [`Action`]. [`super::render`] prints it in nft syntax (what `nft list
//! table` shows) and [`super::encode`] encodes it as one netlink batch; because both read the
//! same value, what `--dry-run` shows is what is applied. The VPN firewall's planner
//! ([`crate::firewall::plan`]) and the email firewall ([`crate::email`]) build rulesets; nothing
//! here knows about either.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address prefix with the host bits cleared (`192.168.1.0/24`, `fe80::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The prefix of `addr/len`, host bits cleared. `len` is capped at the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        match addr {
            IpAddr::V4(a) => {
                let len = len.min(32);
                let network = u32::from(a) & netmask(len, 32) as u32;
                Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(network)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let network = u128::from(a) & netmask(len, 128);
                Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(network)),
                    len,
                }
            }
        }
    }
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// Whether this prefix covers a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.len == self.max_len()
    }
    /// The family's width: 32 or 128.
    pub fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }
    /// Whether `other` lies entirely inside this prefix.
    pub fn contains(&self, other: &Prefix) -> bool {
        other.addr.is_ipv4() == self.addr.is_ipv4()
            && other.len >= self.len
            && Prefix::new(other.addr, self.len).addr == self.addr
    }
    /// The netmask as bytes (4 or 16).
    pub fn mask_bytes(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(_) => (netmask(self.len, 32) as u32).to_be_bytes().to_vec(),
            IpAddr::V6(_) => netmask(self.len, 128).to_be_bytes().to_vec(),
        }
    }
}

/// The netmask of a `len`-bit prefix of a `width`-bit address (32 or 128), in the low bits.
fn netmask(len: u8, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (width - u32::from(len))) & (u128::MAX >> (128 - width))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// An interface name pattern: an exact name (`tun0`) or a prefix with a trailing `*` (`tun*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfPattern {
    stem: String,
    wildcard: bool,
}

impl IfPattern {
    /// An exact interface name as the kernel reports it (not validated: kernel names are
    /// taken as they are, `lo` included).
    pub fn exact(name: &str) -> IfPattern {
        IfPattern {
            stem: name.to_string(),
            wildcard: false,
        }
    }
    /// A pattern from its parts, unchecked (the policy's parser checks what users give).
    pub(crate) fn from_parts(stem: &str, wildcard: bool) -> IfPattern {
        IfPattern {
            stem: stem.to_string(),
            wildcard,
        }
    }
    /// The name, or the part before the `*`.
    pub fn stem(&self) -> &str {
        &self.stem
    }
    /// Whether the pattern ends in `*` (matches every name starting with the stem).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
    /// Whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        if self.wildcard {
            name.starts_with(&self.stem)
        } else {
            name == self.stem
        }
    }
}

impl fmt::Display for IfPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.stem, if self.wildcard { "*" } else { "" })
    }
}

/// An address family for matches and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A transport protocol for port matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4 {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4::Tcp => libc::IPPROTO_TCP as u8,
            L4::Udp => libc::IPPROTO_UDP as u8,
        }
    }
    /// The nft keyword.
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// The IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// One condition of a rule. All conditions of a rule must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// The output interface name matches (`oifname "eth0"`, `oifname "tun*"`).
    Oif(IfPattern),
    /// The input interface name matches (`iifname "lo"`).
    Iif(IfPattern),
    /// The packet is of this family (`meta nfproto ipv4`).
    Nfproto(Family),
    /// The transport protocol is this one (`meta l4proto tcp`).
    L4proto(u8),
    /// The destination lies in the prefix (`ip daddr 192.168.1.0/24`).
    Daddr(Prefix),
    /// The source lies in the prefix (`ip saddr 192.168.1.0/24`).
    Saddr(Prefix),
    /// The destination is in the named set (`ip daddr @gateways4`).
    DaddrIn(String, Family),
    /// The destination port (`udp dport 53`).
    Dport(L4, u16),
    /// The source port (`udp sport 68`).
    Sport(L4, u16),
    /// The socket's owner (`meta skuid 1000`).
    SkUid(u32),
    /// The IPv6 hop limit (`ip6 hoplimit 255`).
    HopLimit(u8),
    /// The ICMPv6 type (`icmpv6 type nd-neighbor-solicit`).
    Icmpv6Type(u8),
    /// The packet's connection had its destination rewritten by NAT (`ct status dnat`): in
    /// the output hook after a `dnat` rule, the packet is on its way to the new address.
    CtStatusDnat,
    /// The destination is an address of this host (`fib daddr type local`): the routing
    /// table's verdict on the destination address, whatever interface it belongs to.
    DaddrLocal,
    /// The packet travels in the reply direction of its connection (`ct direction reply`):
    /// conntrack saw the other side send first. Untracked packets never match.
    CtDirectionReply,
}

/// ICMPv6 router solicitation.
pub const ND_ROUTER_SOLICIT: u8 = 133;
/// ICMPv6 neighbour solicitation.
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 neighbour advertisement.
pub const ND_NEIGHBOR_ADVERT: u8 = 136;

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the packet pass this chain.
    Accept,
    /// Leave this chain (in a base chain: its policy, accept, applies).
    Return,
    /// Reject with ICMP(v6) port-unreachable.
    Reject,
    /// Reject a TCP packet with a TCP reset (the rule must match TCP).
    RejectTcpReset,
    /// Discard the packet silently. Where `reject` is not allowed (the postrouting hook),
    /// a locally generated packet dropped this way fails its `sendmsg` with `EPERM`.
    Drop,
    /// Log with a prefix at a syslog level, and go on with the next rule.
    Log {
        /// The prefix.
        prefix: String,
        /// The syslog level (7 = debug).
        level: u32,
    },
    /// Rewrite the destination to this address and port (IPv4).
    Dnat(Ipv4Addr, u16),
    /// Rewrite the source to the output interface's address.
    Masquerade,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The conditions, in the order they are evaluated and printed.
    pub matches: Vec<Match>,
    /// The action.
    pub action: Action,
    /// Whether the rule counts the packets it takes (`counter`, placed before the action).
    pub counter: bool,
}

impl Rule {
    /// A rule with these matches and this action, without a counter.
    pub fn new(matches: impl Into<Vec<Match>>, action: Action) -> Rule {
        Rule {
            matches: matches.into(),
            action,
            counter: false,
        }
    }
    /// The same rule with a counter (`... counter reject`).
    pub fn counted(mut self) -> Rule {
        self.counter = true;
        self
    }
}

/// Where a base chain is hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Locally delivered packets.
    Input,
    /// Locally generated packets.
    Output,
    /// All packets about to leave.
    Postrouting,
    /// All packets that arrive, before routing (and before a destination rewrite there).
    Prerouting,
    /// Packets routed through this host (containers, VMs, shared connections), after
    /// routing: the output interface is the one they really leave by.
    Forward,
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainKind {
    /// Filtering.
    Filter,
    /// Address translation.
    Nat,
}

/// A base chain (policy accept) and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// The name.
    pub name: String,
    /// The hook.
    pub hook: Hook,
    /// The type.
    pub kind: ChainKind,
    /// The priority (0 = filter, -100 = dstnat, 100 = srcnat).
    pub priority: i32,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// A named set of addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// The name.
    pub name: String,
    /// The address family of the elements.
    pub family: Family,
    /// The elements, sorted, unique, all of `family`.
    pub elements: Vec<IpAddr>,
}

/// A complete table: what one transaction installs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ruleset {
    /// The table name (family `inet`).
    pub table: String,
    /// What the table records about the policy that made it, shown as the table's comment and
    /// read back by status checks. The transport appends the rules' fingerprint.
    pub record: String,
    /// The sets, declared before the chains.
    pub sets: Vec<Set>,
    /// The chains.
    pub chains: Vec<Chain>,
    /// Whether to set `net.ipv4.ip_forward = 1` after the commit (only `--compat`, as the
    /// original did).
    pub set_ip_forward: bool,
}

impl Ruleset {
    /// Finds a chain by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    /// Finds a set by name.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
    /// The number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}
