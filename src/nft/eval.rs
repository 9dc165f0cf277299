//! The kernel's walk of one packet through a [`Ruleset`], without the kernel: which chains see
//! it, in which order, with which interfaces, what the NAT rules rewrite, and which rule
//! decides its fate. Pure: the routing decision is an input ([`Routing`]), asked again after a
//! rewrite, so the walk is unit-tested with a table of routes and checked against the real
//! kernel with real route lookups (`netns-tests/tests/differential.rs`).
//!
//! What the walk models, as Linux does it:
//! - A packet this host sends is routed first (its output interface, its source address), then
//!   goes through every chain hooked at **output**, then **postrouting**. Every output chain
//!   sees the interface chosen *before* the hook (`meta oifname` reads the hook's device): a
//!   DNAT in a NAT chain re-routes the packet, but later output chains still see the old
//!   interface; postrouting chains see the interface it really leaves by.
//! - A forwarded packet goes through **prerouting** (where a DNAT may rewrite it), is routed
//!   from its input interface, loses one hop of its TTL or hop limit (one that has none left
//!   is not forwarded), then goes through **forward** and **postrouting**; one routed to an
//!   address of this host goes through **input** instead.
//! - A packet bridged between two guests on one bridge, with `br_netfilter` loaded, goes
//!   through prerouting, forward and postrouting with the bridge as both interfaces, neither
//!   routed nor losing a hop (unless a DNAT at prerouting makes the bridge route it).
//! - A packet sent to an address of this host goes out by `lo` (output, postrouting) and comes
//!   back in by `lo` (prerouting, input).
//! - Chains at one hook run by priority (equal priorities in the order the chains were
//!   created). NAT chains run together at the hook's NAT position (-100 at prerouting and
//!   output, 100 at postrouting and input) in their own priority order, only for the first
//!   packet of a connection, and only until one of them rewrote the packet. A DNAT to an
//!   IPv4 address does nothing to an IPv6 packet.
//! - Conntrack: a packet is the first of its connection (`ct direction original`), unless it
//!   is marked as a reply ([`Packet::reply`]): then no NAT chain sees it and `ct direction
//!   reply` holds. `ct status dnat` holds once a DNAT changed the destination (address or
//!   port); a DNAT to the address and port the packet already has changes nothing, and the
//!   kernel does not set the bit.
//! - `fib daddr type local` asks the routing whether the destination is an address of this
//!   host, as the kernel's lookup does, before any rewrite by the rule's own chain.
//! - `accept` and `return` end a chain (base chains have policy accept); `reject` and `drop`
//!   end the packet; `log` goes on with the next rule.

use std::fmt;
use std::net::IpAddr;

use crate::nft::render::rule_text;
use crate::nft::ruleset::{Action, Chain, ChainKind, Family, Hook, Match, Rule, Ruleset, L4};

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (a connection's first segment).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP for IPv4 packets, ICMPv6 for IPv6 packets, with this type (echo request: 8 and
    /// 128).
    Icmp {
        /// The ICMP or ICMPv6 type.
        icmp_type: u8,
    },
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Transport {
    /// The IP protocol number for a packet of `family`.
    pub fn protocol(&self, family: Family) -> u8 {
        match (self, family) {
            (Transport::Tcp { .. }, _) => L4::Tcp.number(),
            (Transport::Udp { .. }, _) => L4::Udp.number(),
            (Transport::Icmp { .. }, Family::V4) => 1,
            (Transport::Icmp { .. }, Family::V6) => crate::nft::ruleset::IPPROTO_ICMPV6,
            (Transport::Other(p), _) => *p,
        }
    }
    /// The destination port, for TCP and UDP.
    pub fn dport(&self) -> Option<u16> {
        match self {
            Transport::Tcp { dport, .. } | Transport::Udp { dport, .. } => Some(*dport),
            Transport::Icmp { .. } | Transport::Other(_) => None,
        }
    }
    /// The same transport with another destination port (TCP and UDP only).
    fn with_dport(self, port: u16) -> Transport {
        match self {
            Transport::Tcp { sport, .. } => Transport::Tcp { sport, dport: port },
            Transport::Udp { sport, .. } => Transport::Udp { sport, dport: port },
            other @ (Transport::Icmp { .. } | Transport::Other(_)) => other,
        }
    }
}

/// Where a packet comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Sent by a socket of this host.
    Local {
        /// The device the socket is bound to (`SO_BINDTODEVICE`), if any.
        bound_device: Option<String>,
        /// The socket owner's uid (`meta skuid`), if known.
        uid: Option<u32>,
    },
    /// Received on `iif` and routed on by this host (a container, a VM, a hotspot client).
    Forwarded {
        /// The interface it came in by.
        iif: String,
    },
    /// Bridged from one port of `bridge` to another (two guests on one bridge), with
    /// `br_netfilter` loaded: the IP hooks see the bridge as both the input and the output
    /// interface, nothing is routed and no hop is taken (neighbour discovery and link-local
    /// multicast between guests pass the forward hook as they are). A DNAT at prerouting
    /// makes the bridge route the packet instead, as a forwarded one.
    Bridged {
        /// The bridge.
        bridge: String,
    },
}

/// A packet to walk through the ruleset: the first packet of a connection, or a reply of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The source address; for a packet of this host `None` lets the route choose, as the
    /// kernel does for an unbound socket. Required for forwarded packets.
    pub src: Option<IpAddr>,
    /// The destination address; its family is the packet's.
    pub dst: IpAddr,
    /// Protocol and ports or ICMP type.
    pub transport: Transport,
    /// The IPv4 TTL or IPv6 hop limit (64 for ordinary traffic, 255 for neighbour discovery).
    pub hop_limit: u8,
    /// Where it comes from.
    pub origin: Origin,
    /// Whether it answers a connection that its destination opened (conntrack's reply
    /// direction: `ct direction reply`), rather than being the first packet of a connection.
    /// NAT chains do not see replies; the walk takes a reply's addresses as they are (a
    /// reply of a connection without NAT, or after conntrack undid its NAT).
    pub reply: bool,
}

impl Packet {
    /// A packet this host sends to `dst` from an unbound socket of an unknown owner.
    pub fn local(dst: IpAddr, transport: Transport) -> Packet {
        Packet {
            src: None,
            dst,
            transport,
            hop_limit: 64,
            origin: Origin::Local {
                bound_device: None,
                uid: None,
            },
            reply: false,
        }
    }
    /// The packet's family.
    pub fn family(&self) -> Family {
        family_of(self.dst)
    }
}

fn family_of(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// One routing question: where does a packet to `dst` go?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteQuery<'a> {
    /// The destination.
    pub dst: IpAddr,
    /// The source, when it is already chosen.
    pub src: Option<IpAddr>,
    /// The device the sending socket is bound to (an output route restricted to it).
    pub oif: Option<&'a str>,
    /// The interface a forwarded packet came in by (an input route).
    pub iif: Option<&'a str>,
}

/// A routing answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The output interface (`lo` for this host's own addresses).
    pub oif: String,
    /// Whether the destination is an address of this host.
    pub local: bool,
    /// The source address the route prefers, if it names one.
    pub src: Option<IpAddr>,
}

/// The routing decision, asked for each packet and again after a rewrite. `Ok(None)` means
/// there is no route (the packet is not sent); `Err` that the question could not be asked.
pub trait Routing {
    /// Routes one packet.
    fn route(&self, q: &RouteQuery<'_>) -> Result<Option<Route>, String>;
}

impl<F> Routing for F
where
    F: Fn(&RouteQuery<'_>) -> Result<Option<Route>, String>,
{
    fn route(&self, q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
        self(q)
    }
}

/// The netfilter hooks in the order a packet can meet them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Every packet that comes in, before routing.
    Prerouting,
    /// Packets for this host.
    Input,
    /// Packets routed through this host.
    Forward,
    /// Packets this host sends.
    Output,
    /// Every packet about to leave.
    Postrouting,
}

impl Stage {
    /// The hook's name in nft.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prerouting => "prerouting",
            Stage::Input => "input",
            Stage::Forward => "forward",
            Stage::Output => "output",
            Stage::Postrouting => "postrouting",
        }
    }
    /// Where the NAT chains of this hook run (the kernel's NAT hook priorities).
    fn nat_priority(self) -> i32 {
        match self {
            Stage::Prerouting | Stage::Output => -100,
            Stage::Input | Stage::Postrouting => 100,
            Stage::Forward => 0,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The hook a chain is attached to.
pub fn stage_of(hook: Hook) -> Stage {
    match hook {
        Hook::Prerouting => Stage::Prerouting,
        Hook::Input => Stage::Input,
        Hook::Forward => Stage::Forward,
        Hook::Output => Stage::Output,
        Hook::Postrouting => Stage::Postrouting,
    }
}

/// One rule of the ruleset, for a reader.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The chain's name.
    pub chain: String,
    /// The chain's hook.
    pub stage: Stage,
    /// The rule's position in its chain, from 0.
    pub index: usize,
    /// The rule in nft syntax.
    pub text: String,
    /// The rule itself.
    pub rule: Rule,
}

impl RuleRef {
    fn new(chain: &Chain, index: usize) -> RuleRef {
        let rule = chain.rules[index].clone();
        RuleRef {
            chain: chain.name.clone(),
            stage: stage_of(chain.hook),
            index,
            text: rule_text(&rule),
            rule,
        }
    }
}

/// What happened to the packet in the end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fate {
    /// It left the host through this interface.
    Sent {
        /// The interface.
        oif: String,
    },
    /// It was delivered to this host (through `lo` when this host sent it).
    Delivered,
    /// A rule refused it; the sender gets an ICMP error, or a TCP reset.
    Rejected {
        /// Whether the answer is a TCP reset.
        tcp_reset: bool,
    },
    /// A rule dropped it without an answer.
    Dropped,
    /// There is no route for it: it is not sent.
    NoRoute {
        /// Whether the route went missing only after a NAT rule rewrote the destination.
        after_rewrite: bool,
    },
    /// A forwarded packet whose TTL or hop limit ran out: the host answers "time exceeded"
    /// and does not forward it (before the forward hook).
    Expired,
}

impl Fate {
    /// Whether the packet gets where it was routed (sent or delivered).
    pub fn passes(&self) -> bool {
        match self {
            Fate::Sent { .. } | Fate::Delivered => true,
            Fate::Rejected { .. } | Fate::Dropped | Fate::NoRoute { .. } | Fate::Expired => false,
        }
    }
}

/// How one chain ended for the packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChainEnd {
    /// A rule ended it (accept, return, reject, a NAT rewrite).
    Rule(usize),
    /// No rule ended it: the policy (accept) applied.
    Policy,
    /// A NAT chain the packet did not enter: an earlier NAT chain at this hook rewrote it, or
    /// the connection's NAT was settled at an earlier hook.
    Skipped,
}

/// One chain the packet met.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    /// The hook.
    pub stage: Stage,
    /// The chain's name.
    pub chain: String,
    /// The input interface the chain saw (`iifname`).
    pub iif: Option<String>,
    /// The output interface the chain saw (`oifname`).
    pub oif: Option<String>,
    /// How the chain ended.
    pub end: ChainEnd,
}

/// A destination rewrite (DNAT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rewrite {
    /// The rule that rewrote.
    pub rule: RuleRef,
    /// The new destination.
    pub dst: IpAddr,
    /// The new destination port.
    pub dport: Option<u16>,
}

/// A source rewrite to the output interface's address (masquerade).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Masquerade {
    /// The rule that rewrote.
    pub rule: RuleRef,
    /// The interface whose address the source became.
    pub oif: String,
}

/// The walk of one packet: its fate, the rule that decided it, the rewrites, every chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evaluation {
    /// What happened to it.
    pub fate: Fate,
    /// The rule that decided: the one that refused it, or else the first filter rule that let
    /// it through (the first chain that judged it; `None` when only chain policies applied).
    pub decided_by: Option<RuleRef>,
    /// Every filter rule that let it through (accept or return), in the order the chains
    /// ran: a packet passes only when every filter chain at its hooks lets it go on.
    pub accepted_by: Vec<RuleRef>,
    /// The first route: where the packet was headed before any rewrite (`None` without one).
    pub route: Option<Route>,
    /// The source address it had before any rewrite, when known.
    pub src: Option<IpAddr>,
    /// The destination rewrite, if a NAT rule made one.
    pub rewrite: Option<Rewrite>,
    /// Where it was routed after the rewrite.
    pub rerouted: Option<Route>,
    /// The source rewrite, if a NAT rule made one.
    pub masquerade: Option<Masquerade>,
    /// Rules that logged it.
    pub logged: Vec<RuleRef>,
    /// Every chain it met, in order.
    pub steps: Vec<Step>,
}

/// Why a packet could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The routing question failed.
    #[error("could not look up the route: {0}")]
    Route(String),
    /// A forwarded packet without a source address.
    #[error("a forwarded packet needs a source address")]
    NoSource,
    /// Source and destination of different families.
    #[error("source {0} and destination {1} are of different families")]
    MixedFamilies(IpAddr, IpAddr),
    /// A NAT action in a chain or at a hook where the kernel would refuse it.
    #[error("rule {index} of chain {chain} rewrites addresses where the kernel does not allow it")]
    MisplacedNat {
        /// The chain.
        chain: String,
        /// The rule's position, from 1.
        index: usize,
    },
}

/// The packet as chains see it at one point of its walk.
struct View<'a> {
    family: Family,
    src: Option<IpAddr>,
    dst: IpAddr,
    transport: Transport,
    hop_limit: u8,
    iif: Option<&'a str>,
    oif: Option<&'a str>,
    uid: Option<u32>,
    /// Whether a NAT rule rewrote the connection's destination (`ct status dnat`).
    dnat: bool,
    /// Whether the destination is an address of this host (`fib daddr type local`).
    dst_local: bool,
    /// Whether the packet is a reply (`ct direction reply`).
    reply: bool,
}

/// Whether one match holds for the packet.
fn holds(m: &Match, v: &View<'_>, rs: &Ruleset) -> bool {
    let in_prefix = |p: &crate::nft::ruleset::Prefix, a: Option<IpAddr>| {
        a.is_some_and(|a| {
            family_of(a) == family_of(p.addr())
                && p.contains(&crate::nft::ruleset::Prefix::new(a, p.max_len()))
        })
    };
    let proto = v.transport.protocol(v.family);
    match m {
        // An absent interface reads as the empty name, as in the kernel.
        Match::Oif(p) => p.matches(v.oif.unwrap_or("")),
        Match::Iif(p) => p.matches(v.iif.unwrap_or("")),
        Match::Nfproto(f) => *f == v.family,
        Match::L4proto(p) => *p == proto,
        Match::Daddr(p) => in_prefix(p, Some(v.dst)),
        Match::Saddr(p) => in_prefix(p, v.src),
        Match::DaddrIn(name, fam) => {
            *fam == v.family
                && rs
                    .set(name)
                    .is_some_and(|s| s.family == *fam && s.elements.contains(&v.dst))
        }
        Match::Dport(l4, port) | Match::Sport(l4, port) => {
            let ports = match v.transport {
                Transport::Tcp { sport, dport } if *l4 == L4::Tcp => Some((sport, dport)),
                Transport::Udp { sport, dport } if *l4 == L4::Udp => Some((sport, dport)),
                Transport::Tcp { .. }
                | Transport::Udp { .. }
                | Transport::Icmp { .. }
                | Transport::Other(_) => None,
            };
            match (ports, m) {
                (Some((_, d)), Match::Dport(..)) => d == *port,
                (Some((s, _)), _) => s == *port,
                (None, _) => false,
            }
        }
        Match::SkUid(uid) => v.uid == Some(*uid),
        Match::CtStatusDnat => v.dnat,
        Match::DaddrLocal => v.dst_local,
        Match::CtDirectionReply => v.reply,
        Match::HopLimit(h) => v.family == Family::V6 && v.hop_limit == *h,
        Match::Icmpv6Type(t) => {
            v.family == Family::V6
                && matches!(v.transport, Transport::Icmp { icmp_type } if icmp_type == *t)
        }
    }
}

/// What one chain did to the packet.
enum ChainResult {
    /// The chain let it go on (accept, return or policy).
    Continue,
    /// A rule refused it.
    Refuse(Fate),
    /// A NAT rule rewrote its destination.
    Dnat(IpAddr, u16),
    /// A NAT rule rewrote its source.
    Masquerade,
}

/// The packet's state along its walk.
struct Walk<'r> {
    rs: &'r Ruleset,
    routing: &'r dyn Routing,
    /// The device a sending socket is bound to.
    bound: Option<&'r str>,
    /// Where the packet is routed now (`None` before routing).
    route: Option<Route>,
    family: Family,
    src: Option<IpAddr>,
    dst: IpAddr,
    transport: Transport,
    hop_limit: u8,
    uid: Option<u32>,
    /// Whether the packet is a reply.
    reply: bool,
    /// Whether the connection's destination and source NAT are settled.
    dnat_done: bool,
    snat_done: bool,
    /// Whether a DNAT changed the destination (conntrack's `IPS_DST_NAT`).
    dst_nat: bool,
    ev: Evaluation,
}

impl<'r> Walk<'r> {
    /// The chains of one hook in the kernel's order.
    fn chains(&self, stage: Stage) -> Vec<&'r Chain> {
        let mut chains: Vec<(i32, i32, usize, &Chain)> = self
            .rs
            .chains
            .iter()
            .enumerate()
            .filter(|(_, c)| stage_of(c.hook) == stage)
            .map(|(i, c)| {
                let at = match c.kind {
                    ChainKind::Filter => c.priority,
                    ChainKind::Nat => stage.nat_priority(),
                };
                (at, c.priority, i, c)
            })
            .collect();
        chains.sort_by_key(|(at, prio, i, _)| (*at, *prio, *i));
        chains.into_iter().map(|(.., c)| c).collect()
    }

    /// Runs every chain of one hook. Returns the fate when a rule ended the packet.
    fn hook(
        &mut self,
        stage: Stage,
        iif: Option<&str>,
        oif: Option<&str>,
    ) -> Result<Option<Fate>, EvalError> {
        let mut nat_rewrote = false;
        for chain in self.chains(stage) {
            let is_nat = chain.kind == ChainKind::Nat;
            let settled = match stage {
                Stage::Prerouting | Stage::Output => self.dnat_done,
                Stage::Input | Stage::Postrouting => self.snat_done,
                Stage::Forward => false,
            };
            let mut step = Step {
                stage,
                chain: chain.name.clone(),
                iif: iif.map(str::to_string),
                oif: oif.map(str::to_string),
                end: ChainEnd::Policy,
            };
            if is_nat && (settled || nat_rewrote) {
                step.end = ChainEnd::Skipped;
                self.ev.steps.push(step);
                continue;
            }
            let (end, result) = self.chain(chain, stage, iif, oif)?;
            step.end = end;
            self.ev.steps.push(step);
            match result {
                ChainResult::Continue => {}
                ChainResult::Refuse(fate) => return Ok(Some(fate)),
                ChainResult::Dnat(addr, port) => {
                    nat_rewrote = true;
                    let moved = addr != self.dst;
                    if moved || self.transport.dport().is_some_and(|p| p != port) {
                        self.dst_nat = true;
                    }
                    self.dst = addr;
                    self.transport = self.transport.with_dport(port);
                    // A packet of this host is routed again at once when its destination
                    // changed; a forwarded one is routed after prerouting anyway. The
                    // hook's chains still see the device it had.
                    if stage == Stage::Output && moved {
                        let q = RouteQuery {
                            dst: self.dst,
                            src: self.src,
                            oif: self.bound,
                            iif: None,
                        };
                        match self.routing.route(&q).map_err(EvalError::Route)? {
                            Some(r) => {
                                self.ev.rerouted = Some(r.clone());
                                self.route = Some(r);
                            }
                            None => {
                                return Ok(Some(Fate::NoRoute {
                                    after_rewrite: true,
                                }))
                            }
                        }
                    }
                }
                ChainResult::Masquerade => nat_rewrote = true,
            }
        }
        // The first packet settles the connection's NAT at the first hook of each kind.
        match stage {
            Stage::Prerouting | Stage::Output => self.dnat_done = true,
            Stage::Input | Stage::Postrouting => self.snat_done = true,
            Stage::Forward => {}
        }
        Ok(None)
    }

    /// Runs one chain.
    fn chain(
        &mut self,
        chain: &Chain,
        stage: Stage,
        iif: Option<&str>,
        oif: Option<&str>,
    ) -> Result<(ChainEnd, ChainResult), EvalError> {
        let misplaced = |i: usize| EvalError::MisplacedNat {
            chain: chain.name.clone(),
            index: i + 1,
        };
        // `fib daddr type local` asks the routing table, as the kernel does.
        let dst_local = if chain
            .rules
            .iter()
            .any(|r| r.matches.contains(&Match::DaddrLocal))
        {
            let q = RouteQuery {
                dst: self.dst,
                src: None,
                oif: None,
                iif: None,
            };
            self.route(&q)?.is_some_and(|r| r.local)
        } else {
            false
        };
        for (i, rule) in chain.rules.iter().enumerate() {
            let view = View {
                family: self.family,
                src: self.src,
                dst: self.dst,
                transport: self.transport,
                hop_limit: self.hop_limit,
                iif,
                oif,
                uid: self.uid,
                dnat: self.dst_nat,
                dst_local,
                reply: self.reply,
            };
            if !rule.matches.iter().all(|m| holds(m, &view, self.rs)) {
                continue;
            }
            let here = || RuleRef::new(chain, i);
            let filter = chain.kind == ChainKind::Filter;
            match &rule.action {
                Action::Accept | Action::Return => {
                    if filter {
                        let r = here();
                        if self.ev.decided_by.is_none() {
                            self.ev.decided_by = Some(r.clone());
                        }
                        self.ev.accepted_by.push(r);
                    }
                    return Ok((ChainEnd::Rule(i), ChainResult::Continue));
                }
                Action::Reject | Action::RejectTcpReset => {
                    self.ev.decided_by = Some(here());
                    let tcp_reset = rule.action == Action::RejectTcpReset
                        && matches!(self.transport, Transport::Tcp { .. });
                    let fate = if rule.action == Action::RejectTcpReset && !tcp_reset {
                        // The kernel sends a reset only for TCP; anything else is dropped.
                        Fate::Dropped
                    } else {
                        Fate::Rejected { tcp_reset }
                    };
                    return Ok((ChainEnd::Rule(i), ChainResult::Refuse(fate)));
                }
                Action::Drop => {
                    self.ev.decided_by = Some(here());
                    return Ok((ChainEnd::Rule(i), ChainResult::Refuse(Fate::Dropped)));
                }
                Action::Log { .. } => self.ev.logged.push(here()),
                Action::Dnat(addr, port) => {
                    if filter || !matches!(stage, Stage::Prerouting | Stage::Output) {
                        return Err(misplaced(i));
                    }
                    // `dnat ip to` leaves packets of the other family alone: the rule goes on.
                    if self.family == Family::V4 {
                        self.ev.rewrite = Some(Rewrite {
                            rule: here(),
                            dst: IpAddr::V4(*addr),
                            dport: self.transport.dport().map(|_| *port),
                        });
                        return Ok((
                            ChainEnd::Rule(i),
                            ChainResult::Dnat(IpAddr::V4(*addr), *port),
                        ));
                    }
                }
                Action::Masquerade => {
                    if filter || stage != Stage::Postrouting {
                        return Err(misplaced(i));
                    }
                    self.ev.masquerade = Some(Masquerade {
                        rule: here(),
                        oif: oif.unwrap_or_default().to_string(),
                    });
                    return Ok((ChainEnd::Rule(i), ChainResult::Masquerade));
                }
            }
        }
        Ok((ChainEnd::Policy, ChainResult::Continue))
    }

    fn route(&self, q: &RouteQuery<'_>) -> Result<Option<Route>, EvalError> {
        self.routing.route(q).map_err(EvalError::Route)
    }

    fn end(mut self, fate: Fate) -> Evaluation {
        self.ev.fate = fate;
        self.ev
    }
}

/// Walks `pkt` through `rs` as the kernel would, asking `routing` where it goes.
pub fn evaluate(
    rs: &Ruleset,
    pkt: &Packet,
    routing: &dyn Routing,
) -> Result<Evaluation, EvalError> {
    if let Some(src) = pkt.src {
        if family_of(src) != pkt.family() {
            return Err(EvalError::MixedFamilies(src, pkt.dst));
        }
    }
    let uid = match &pkt.origin {
        Origin::Local { uid, .. } => *uid,
        Origin::Forwarded { .. } | Origin::Bridged { .. } => None,
    };
    let bound = match &pkt.origin {
        Origin::Local { bound_device, .. } => bound_device.as_deref(),
        Origin::Forwarded { .. } | Origin::Bridged { .. } => None,
    };
    let mut w = Walk {
        rs,
        routing,
        bound,
        route: None,
        family: pkt.family(),
        src: pkt.src,
        dst: pkt.dst,
        transport: pkt.transport,
        hop_limit: pkt.hop_limit,
        uid,
        reply: pkt.reply,
        // A reply's connection has its NAT settled by its first packet.
        dnat_done: pkt.reply,
        snat_done: pkt.reply,
        dst_nat: false,
        ev: Evaluation {
            fate: Fate::Delivered,
            decided_by: None,
            accepted_by: Vec::new(),
            route: None,
            src: pkt.src,
            rewrite: None,
            rerouted: None,
            masquerade: None,
            logged: Vec::new(),
            steps: Vec::new(),
        },
    };
    match &pkt.origin {
        Origin::Local { .. } => {
            let q = RouteQuery {
                dst: pkt.dst,
                src: pkt.src,
                oif: bound,
                iif: None,
            };
            let Some(first) = w.route(&q)? else {
                return Ok(w.end(Fate::NoRoute {
                    after_rewrite: false,
                }));
            };
            w.src = w.src.or(first.src);
            w.ev.src = w.src;
            w.ev.route = Some(first.clone());
            w.route = Some(first.clone());
            if let Some(fate) = w.hook(Stage::Output, None, Some(&first.oif))? {
                return Ok(w.end(fate));
            }
            let route = w.route.clone().unwrap_or(first);
            if let Some(fate) = w.hook(Stage::Postrouting, None, Some(&route.oif))? {
                return Ok(w.end(fate));
            }
            if !route.local {
                return Ok(w.end(Fate::Sent { oif: route.oif }));
            }
            // Back in through loopback, the connection's NAT settled.
            if let Some(fate) = w.hook(Stage::Prerouting, Some(&route.oif), None)? {
                return Ok(w.end(fate));
            }
            if let Some(fate) = w.hook(Stage::Input, Some(&route.oif), None)? {
                return Ok(w.end(fate));
            }
            Ok(w.end(Fate::Delivered))
        }
        Origin::Forwarded { iif } | Origin::Bridged { bridge: iif } => {
            if pkt.src.is_none() {
                return Err(EvalError::NoSource);
            }
            if let Some(fate) = w.hook(Stage::Prerouting, Some(iif), None)? {
                return Ok(w.end(fate));
            }
            if matches!(pkt.origin, Origin::Bridged { .. }) && w.dst == pkt.dst {
                // Bridged as it is: forward and postrouting see the bridge on both sides.
                for stage in [Stage::Forward, Stage::Postrouting] {
                    if let Some(fate) = w.hook(stage, Some(iif), Some(iif))? {
                        return Ok(w.end(fate));
                    }
                }
                return Ok(w.end(Fate::Sent { oif: iif.clone() }));
            }
            let q = RouteQuery {
                dst: w.dst,
                src: w.src,
                oif: None,
                iif: Some(iif),
            };
            let Some(route) = w.route(&q)? else {
                let after_rewrite = w.dst != pkt.dst;
                return Ok(w.end(Fate::NoRoute { after_rewrite }));
            };
            w.ev.route = Some(route.clone());
            if w.dst != pkt.dst {
                w.ev.rerouted = Some(route.clone());
            }
            if route.local {
                if let Some(fate) = w.hook(Stage::Input, Some(iif), None)? {
                    return Ok(w.end(fate));
                }
                return Ok(w.end(Fate::Delivered));
            }
            // The TTL or hop limit goes down before the forward hook.
            if w.hop_limit <= 1 {
                return Ok(w.end(Fate::Expired));
            }
            w.hop_limit -= 1;
            if let Some(fate) = w.hook(Stage::Forward, Some(iif), Some(&route.oif))? {
                return Ok(w.end(fate));
            }
            // Postrouting still sees the input device of a forwarded packet.
            if let Some(fate) = w.hook(Stage::Postrouting, Some(iif), Some(&route.oif))? {
                return Ok(w.end(fate));
            }
            Ok(w.end(Fate::Sent { oif: route.oif }))
        }
    }
}
