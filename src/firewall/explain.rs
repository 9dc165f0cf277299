//! `firewall explain`: what the kill switch does with one packet, and why, in words a user
//! understands ("rejected: 192.168.2.5 would leave by eth0, outside the tunnel (tun*), and is
//! not a VPN gateway; it is not in a local network of eth0 (LAN private covers
//! 192.168.1.0/24); rule: `counter reject`").
//!
//! The walk itself is [`crate::nft::eval`]; this module asks it the question and words the
//! answer, for the running table or for a plan. [`Explanation`] is what a client renders.

use std::fmt;
use std::net::IpAddr;

use crate::error::Error;
use crate::firewall::json::Json;
use crate::firewall::route::KernelRoutes;
use crate::firewall::status::{judge, Status};
use crate::nft::decode;
use crate::nft::eval::{
    evaluate, ChainEnd, EvalError, Evaluation, Fate, Origin, Packet, Routing, RuleRef, Stage,
    Transport,
};
use crate::plan::{self, gateway_set_name, Action, ChainKind, Family, Match, Prefix, Ruleset};
use crate::policy::{LanMode, Mode, Policy, Profile};

/// The version of the JSON that [`Explanation::to_json`] prints (`bitmask-root/explain`).
pub const JSON_VERSION: u32 = 1;

/// The protocol of the packet asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A TCP connection.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP (IPv4) or ICMPv6 (IPv6) echo request.
    Icmp,
}

impl Protocol {
    /// The word on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// The question: one packet, described as a user would.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// Where it goes.
    pub dst: IpAddr,
    /// The destination port (TCP and UDP).
    pub port: Option<u16>,
    /// The protocol.
    pub protocol: Protocol,
    /// The source port (TCP and UDP; an ephemeral one when not given).
    pub sport: Option<u16>,
    /// The source address (required with `forwarded_from`; chosen by the route otherwise).
    pub src: Option<IpAddr>,
    /// The device the sending socket is bound to (`--via`), for a packet of this host.
    pub via: Option<String>,
    /// The interface a forwarded packet comes in by (`--in`); `None` for this host's own.
    pub forwarded_from: Option<String>,
    /// The sending socket's owner.
    pub uid: Option<u32>,
}

impl Question {
    /// A packet of this host to `dst`.
    pub fn new(dst: IpAddr, port: Option<u16>, protocol: Protocol) -> Question {
        Question {
            dst,
            port,
            protocol,
            sport: None,
            src: None,
            via: None,
            forwarded_from: None,
            uid: None,
        }
    }

    /// The packet the evaluator walks.
    pub fn packet(&self) -> Packet {
        let sport = self.sport.unwrap_or(40000);
        let dport = self.port.unwrap_or(0);
        let transport = match self.protocol {
            Protocol::Tcp => Transport::Tcp { sport, dport },
            Protocol::Udp => Transport::Udp { sport, dport },
            Protocol::Icmp => Transport::Icmp {
                icmp_type: if self.dst.is_ipv4() { 8 } else { 128 },
            },
        };
        let origin = match &self.forwarded_from {
            Some(iif) => Origin::Forwarded { iif: iif.clone() },
            None => Origin::Local {
                bound_device: self.via.clone(),
                uid: self.uid,
            },
        };
        Packet {
            src: self.src,
            dst: self.dst,
            transport,
            hop_limit: 64,
            origin,
            reply: false,
        }
    }

    /// `192.168.2.5:631 (tcp)`, `[2001:db8::1]:53 (udp)`, `2001:db8::1 (icmp echo)`.
    pub fn target(&self) -> String {
        target(self.dst, self.port, self.protocol)
    }
}

fn target(dst: IpAddr, port: Option<u16>, protocol: Protocol) -> String {
    let host = match (dst, port) {
        (IpAddr::V6(a), Some(_)) => format!("[{a}]"),
        (a, _) => a.to_string(),
    };
    match (port, protocol) {
        (Some(p), _) => format!("{host}:{p} ({})", protocol.as_str()),
        (None, Protocol::Icmp) => format!("{host} (icmp echo)"),
        (None, _) => format!("{host} ({})", protocol.as_str()),
    }
}

/// Which rules the answer is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The firewall running in the kernel, read back. `warning` says why it no longer is
    /// the plan for the network as it is now, when it is not ("is stale (...)", "was changed
    /// by another program (...)").
    Running {
        /// What is wrong with the running firewall, if anything.
        warning: Option<String>,
    },
    /// The plan for the options given (`--dry-run`), not applied.
    Plan,
    /// No firewall is running: nothing is filtered.
    NotRunning,
}

impl Basis {
    /// The word in the JSON: `running`, `plan`, `not-running`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::Running { .. } => "running",
            Basis::Plan => "plan",
            Basis::NotRunning => "not-running",
        }
    }
}

/// The answer: the walk, whether the packet gets through, and a paragraph that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The question.
    pub question: Question,
    /// Which rules were asked.
    pub basis: Basis,
    /// The evaluator's walk.
    pub evaluation: Evaluation,
    /// Whether the packet gets where it was routed.
    pub passes: bool,
    /// One short paragraph for a user.
    pub text: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the words need to know about the firewall that made `rs`.
struct Context {
    policy: Option<Policy>,
    lan: Vec<(String, Prefix)>,
}

impl Context {
    fn of(rs: &Ruleset) -> Context {
        Context {
            policy: policy_of(rs),
            lan: lan_rules(rs),
        }
    }
    fn tunnel(&self) -> String {
        self.policy
            .as_ref()
            .map_or_else(|| "tun*".to_string(), |p| p.tunnel().to_string())
    }
    fn lan_mode(&self) -> String {
        self.policy
            .as_ref()
            .map_or_else(|| "private".to_string(), |p| p.lan().to_string())
    }
    fn compat(&self) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.profile() == Profile::Compat)
    }
    fn is_gateway(&self, a: IpAddr) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.gateways().contains(&a))
    }
    /// Whether the firewall blocks with no gateway open ([`Mode::Block`]).
    fn blocking(&self) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.mode() == Mode::Block)
    }
}

/// The policy a ruleset records (its comment and gateway sets), if it is one of ours.
pub fn policy_of(rs: &Ruleset) -> Option<Policy> {
    let builder = plan::parse_record(&rs.record)?;
    let gateways = [Family::V4, Family::V6]
        .into_iter()
        .filter_map(|f| rs.set(gateway_set_name(f)))
        .flat_map(|s| s.elements.iter().copied());
    builder.gateways(gateways).build().ok()
}

/// The local networks a ruleset opens: `oifname "IF" ip daddr PREFIX accept` rules of its
/// output filter chains (host prefixes, which are gateways, left out).
pub fn lan_rules(rs: &Ruleset) -> Vec<(String, Prefix)> {
    let mut out = Vec::new();
    for chain in &rs.chains {
        if chain.kind != ChainKind::Filter
            || crate::nft::eval::stage_of(chain.hook) != Stage::Output
        {
            continue;
        }
        for rule in &chain.rules {
            if let ([Match::Oif(dev), Match::Daddr(p)], Action::Accept) =
                (rule.matches.as_slice(), &rule.action)
            {
                if !dev.is_wildcard() && !p.is_host() {
                    out.push((dev.stem().to_string(), *p));
                }
            }
        }
    }
    out
}

fn contains(p: &Prefix, a: IpAddr) -> bool {
    p.addr().is_ipv4() == a.is_ipv4() && p.contains(&Prefix::new(a, p.max_len()))
}

fn join(items: &[String]) -> String {
    items.join(", ")
}

/// Asks `rs` about `q` with `routing`, and words the answer.
pub fn explain(
    rs: &Ruleset,
    basis: Basis,
    q: &Question,
    routing: &dyn Routing,
) -> Result<Explanation, EvalError> {
    let ev = evaluate(rs, &q.packet(), routing)?;
    let ctx = Context::of(rs);
    let passes = ev.fate.passes();
    let mut text = words(&ev, q, &ctx);
    match &basis {
        Basis::Running { warning: Some(why) } => text.push_str(&format!(
            " Note: the running firewall {why}; run firewall start again."
        )),
        Basis::NotRunning => text.push_str(&format!(
            " The firewall is not running (no table inet {}): nothing is filtered.",
            plan::TABLE
        )),
        Basis::Running { warning: None } | Basis::Plan => {}
    }
    if ctx.compat() {
        text.push_str(" (LEAKY --compat rules.)");
    }
    Ok(Explanation {
        question: q.clone(),
        basis,
        evaluation: ev,
        passes,
        text,
    })
}

/// The interface the deciding chain saw, or the first route's.
fn seen_oif(ev: &Evaluation) -> Option<String> {
    let by_rule = ev.decided_by.as_ref().and_then(|r| {
        ev.steps
            .iter()
            .find(|s| s.chain == r.chain && s.end == ChainEnd::Rule(r.index))
            .and_then(|s| s.oif.clone())
    });
    by_rule.or_else(|| ev.route.as_ref().map(|r| r.oif.clone()))
}

fn rule_clause(r: &Option<RuleRef>) -> String {
    match r {
        Some(r) => format!("; rule: `{}` (chain {})", r.text, r.chain),
        None => String::new(),
    }
}

/// The deciding rule of a packet that passes, and, when it only handed the packet on to a
/// later chain (`ct status dnat ... accept`: the rewritten query is judged at postrouting),
/// the rules that let it through there.
fn pass_clause(ev: &Evaluation) -> String {
    let mut s = rule_clause(&ev.decided_by);
    let handed_on = ev
        .decided_by
        .as_ref()
        .is_some_and(|r| r.rule.matches.contains(&Match::CtStatusDnat));
    if handed_on {
        for r in ev.accepted_by.iter().skip(1) {
            s.push_str(&format!(", then `{}` (chain {})", r.text, r.chain));
        }
    }
    s
}

fn words(ev: &Evaluation, q: &Question, ctx: &Context) -> String {
    let what = q.target();
    let rewrite = ev.rewrite.as_ref().map(|r| match r.dport {
        Some(p) => format!("{}:{p}", r.dst),
        None => r.dst.to_string(),
    });
    match &ev.fate {
        Fate::NoRoute {
            after_rewrite: false,
        } => format!(
            "not sent: there is no route to {}{}; the firewall is not involved.",
            q.dst,
            q.via
                .as_ref()
                .map(|v| format!(" through {v}"))
                .unwrap_or_default()
        ),
        Fate::NoRoute {
            after_rewrite: true,
        } => format!(
            "dropped: {what} is rewritten to {} and there is no route to it{}.",
            rewrite.unwrap_or_default(),
            ev.rewrite
                .as_ref()
                .map(|r| format!("; rule: `{}` (chain {})", r.rule.text, r.rule.chain))
                .unwrap_or_default()
        ),
        Fate::Expired => format!(
            "not forwarded: the hop limit of {what} runs out here (time exceeded); the firewall is not involved."
        ),
        Fate::Rejected { .. } | Fate::Dropped => {
            let verdict = match ev.fate {
                Fate::Rejected { tcp_reset: true } => "rejected with a TCP reset",
                Fate::Rejected { tcp_reset: false } => "rejected (ICMP port unreachable)",
                _ => "dropped",
            };
            format!(
                "{verdict}: {}{}.",
                refusal_reason(ev, q, ctx, rewrite.as_deref()),
                rule_clause(&ev.decided_by)
            )
        }
        Fate::Sent { oif } => {
            let mut s = format!(
                "passes: {}; {what} leaves by {oif}",
                pass_reason(ev, q, ctx)
            );
            if let Some(rw) = &ev.rewrite {
                s.push_str(&format!(
                    " rewritten to {} (`{}`)",
                    rewrite.clone().unwrap_or_default(),
                    rw.rule.text
                ));
            }
            if let Some(m) = &ev.masquerade {
                s.push_str(&format!(
                    ", its source masqueraded to the address of {}",
                    m.oif
                ));
            }
            s.push_str(&pass_clause(ev));
            s.push('.');
            s
        }
        Fate::Delivered => format!(
            "passes: {}; {what} is delivered on this host{}.",
            pass_reason(ev, q, ctx),
            pass_clause(ev)
        ),
    }
}

fn refusal_reason(ev: &Evaluation, q: &Question, ctx: &Context, rewrite: Option<&str>) -> String {
    let oif = seen_oif(ev).unwrap_or_else(|| "?".into());
    let tun = ctx.tunnel();
    let rule = ev.decided_by.as_ref().map(|r| &r.rule);
    let dns = rule.is_some_and(|r| r.matches.iter().any(|m| matches!(m, Match::Dport(_, 53))));
    let forwarded = q.forwarded_from.is_some();
    let what = if forwarded { "forwarded DNS" } else { "DNS" };
    if dns && !ctx.compat() {
        return match rewrite {
            Some(rw) => match &q.via {
                Some(via) => format!(
                    "{what} is rewritten to {rw} (the VPN's resolver) and may leave only through the tunnel ({tun}), but this socket is bound to {via}"
                ),
                None => format!(
                    "{what} is rewritten to {rw} (the VPN's resolver) and may leave only through the tunnel ({tun}), but {} is routed via {oif} (is the VPN connected?)",
                    rw.rsplit_once(':').map_or(rw, |(a, _)| a)
                ),
            },
            None => format!(
                "{what} may leave only through the tunnel ({tun}) or to a VPN gateway, and this query would leave by {oif}{}",
                if q.dst.is_ipv6() { " (IPv6 DNS is not rewritten)" } else { "" }
            ),
        };
    }
    let to_gateway =
        rule.is_some_and(|r| r.matches.iter().any(|m| matches!(m, Match::DaddrIn(..))));
    if forwarded && to_gateway {
        return format!(
            "{} is a VPN gateway, and forwarded traffic gets no clear path to it (it would leave by {oif}, outside the tunnel ({tun})); a container or VM reaches the VPN through this host's tunnel",
            q.dst
        );
    }
    let mut s = format!(
        "{}{} would leave by {oif}, outside the tunnel ({tun}), {}",
        if forwarded { "forwarded, " } else { "" },
        q.dst,
        if ctx.blocking() {
            "and no VPN gateway is open (blocked: no gateway)"
        } else {
            "and is not a VPN gateway"
        }
    );
    if let Some((dev, p)) = ctx
        .lan
        .iter()
        .find(|(dev, p)| *dev != oif && contains(p, q.dst))
    {
        s.push_str(&format!(
            "; {p} is a local network of {dev}, open only through {dev}"
        ));
        return s;
    }
    if ctx.policy.as_ref().is_some_and(|p| p.lan() == LanMode::Off) {
        s.push_str("; the local network is closed (LAN off)");
        return s;
    }
    let here: Vec<String> = ctx
        .lan
        .iter()
        .filter(|(dev, _)| *dev == oif)
        .map(|(_, p)| p.to_string())
        .collect();
    if here.is_empty() {
        s.push_str(&format!(
            "; {oif} has no local network open (LAN {})",
            ctx.lan_mode()
        ));
    } else {
        s.push_str(&format!(
            "; it is not in a local network of {oif} (LAN {} covers {})",
            ctx.lan_mode(),
            join(&here)
        ));
    }
    s
}

fn pass_reason(ev: &Evaluation, q: &Question, ctx: &Context) -> String {
    let Some(r) = &ev.decided_by else {
        return if ev.fate == Fate::Delivered {
            format!("{} is an address of this host", q.dst)
        } else if q.forwarded_from.is_some() {
            "no rule of the firewall filters forwarded traffic".to_string()
        } else {
            "no rule of the firewall stops it".to_string()
        };
    };
    let dst = q.dst;
    let m = r.rule.matches.as_slice();
    let port = |n: u16| m.iter().any(|x| matches!(x, Match::Dport(_, p) if *p == n));
    let sport = |n: u16| m.iter().any(|x| matches!(x, Match::Sport(_, p) if *p == n));
    match m {
        [Match::Oif(p)] if p.stem() == "lo" && !p.is_wildcard() => {
            "it stays on this host (lo)".to_string()
        }
        [Match::Oif(p)] => format!(
            "it goes through the tunnel ({})",
            seen_oif(ev).unwrap_or_else(|| p.to_string())
        ),
        [Match::Iif(p), Match::CtDirectionReply] => {
            format!("it answers a connection that went out through the tunnel ({p})")
        }
        [Match::CtStatusDnat, ..] => "DNS is rewritten to the VPN's resolver".to_string(),
        [Match::DaddrIn(..)] => {
            format!("{dst} is a VPN gateway (the VPN's own connection leaves outside the tunnel)")
        }
        [Match::Oif(_), Match::Daddr(p)] if p.is_host() && ctx.is_gateway(dst) => {
            format!("{dst} is a VPN gateway (the VPN's own connection leaves outside the tunnel)")
        }
        [Match::Oif(dev), Match::Daddr(p)] => format!(
            "{dst} is in {p}, a local network of {dev} (LAN {})",
            ctx.lan_mode()
        ),
        _ if sport(68) && port(67) => "DHCP keeps the address lease working".to_string(),
        _ if sport(546) && port(547) => "DHCPv6 keeps the address lease working".to_string(),
        _ if m.iter().any(|x| matches!(x, Match::Icmpv6Type(_))) => {
            "IPv6 neighbour discovery (hop limit 255) keeps the link working".to_string()
        }
        [Match::Daddr(_), Match::L4proto(_)] => {
            "link-local ICMPv6 never leaves the link".to_string()
        }
        _ if port(1900) || port(5353) => "SSDP and mDNS discovery multicast stay open".to_string(),
        _ if port(53) && m.iter().any(|x| matches!(x, Match::Saddr(_))) => {
            "the --compat rules let DNS from the LAN's address out".to_string()
        }
        _ => format!("rule `{}` lets it through", r.text),
    }
}

/// Explains `q` for the firewall running in the calling thread's namespace, read back and
/// decoded (routes looked up over rtnetlink). Needs root. Call it outside any async context.
pub fn explain_running(q: &Question) -> Result<Explanation, Error> {
    let (routes, net) = KernelRoutes::open()?;
    let (rs, basis) = match decode::read_running(plan::TABLE)? {
        None => (
            Ruleset {
                table: plan::TABLE.into(),
                record: String::new(),
                sets: Vec::new(),
                chains: Vec::new(),
                set_ip_forward: false,
            },
            Basis::NotRunning,
        ),
        Some(running) => {
            let warning = match judge(&running.kernel, &net)? {
                Status::Up(_) | Status::Down => None,
                Status::Stale { reason, .. } => Some(format!("is stale ({reason})")),
                Status::Tampered { reason } => {
                    Some(format!("was changed by another program ({reason})"))
                }
            };
            (running.ruleset, Basis::Running { warning })
        }
    };
    Ok(explain(&rs, basis, q, &routes)?)
}

/// Explains `q` for the plan of `policy` on the network as it is now (nothing applied; no
/// root needed). To ask without any gateway, plan a blocking policy ([`Mode::Block`]): the
/// same rules with no gateway open.
pub fn explain_plan(policy: &Policy, q: &Question) -> Result<Explanation, Error> {
    let (routes, net) = KernelRoutes::open()?;
    let rs = plan::plan(policy, &net)?;
    Ok(explain(&rs, Basis::Plan, q, &routes)?)
}

fn rule_json(r: &RuleRef) -> Json {
    Json::obj([
        ("chain", Json::str(&r.chain)),
        ("hook", Json::str(r.stage)),
        ("index", Json::Int(r.index as i128)),
        ("text", Json::str(&r.text)),
    ])
}

fn route_json(r: &Option<crate::nft::eval::Route>) -> Json {
    match r {
        Some(r) => Json::obj([
            ("oif", Json::str(&r.oif)),
            ("local", Json::Bool(r.local)),
            ("src", Json::opt_str(r.src)),
        ]),
        None => Json::Null,
    }
}

impl Explanation {
    /// The answer as JSON (`schema` `bitmask-root/explain`, `version` [`JSON_VERSION`]; the
    /// README documents every field).
    pub fn to_json(&self) -> Json {
        let ev = &self.evaluation;
        let q = &self.question;
        let pkt = q.packet();
        let (fate, verdict) = match &ev.fate {
            Fate::Sent { .. } => ("sent", "pass"),
            Fate::Delivered => ("delivered", "pass"),
            Fate::Rejected { .. } => ("rejected", "reject"),
            Fate::Dropped => ("dropped", "drop"),
            Fate::NoRoute { .. } => ("no-route", "no-route"),
            Fate::Expired => ("expired", "no-route"),
        };
        let oif = match &ev.fate {
            Fate::Sent { oif } => Some(oif.clone()),
            _ => ev
                .rerouted
                .as_ref()
                .or(ev.route.as_ref())
                .map(|r| r.oif.clone()),
        };
        let icmp_type = match pkt.transport {
            Transport::Icmp { icmp_type } => Some(icmp_type),
            _ => None,
        };
        let chains = ev
            .steps
            .iter()
            .map(|s| {
                Json::obj([
                    ("hook", Json::str(s.stage)),
                    ("chain", Json::str(&s.chain)),
                    ("iif", Json::opt_str(s.iif.as_ref())),
                    ("oif", Json::opt_str(s.oif.as_ref())),
                    (
                        "end",
                        Json::str(match s.end {
                            ChainEnd::Rule(i) => format!("rule {i}"),
                            ChainEnd::Policy => "policy".into(),
                            ChainEnd::Skipped => "skipped".into(),
                        }),
                    ),
                ])
            })
            .collect();
        Json::obj([
            ("schema", Json::str("bitmask-root/explain")),
            ("version", Json::Int(JSON_VERSION.into())),
            ("basis", Json::str(self.basis.as_str())),
            (
                "warning",
                match &self.basis {
                    Basis::Running { warning } => Json::opt_str(warning.as_ref()),
                    Basis::Plan | Basis::NotRunning => Json::Null,
                },
            ),
            (
                "packet",
                Json::obj([
                    (
                        "family",
                        Json::str(if q.dst.is_ipv4() { "ipv4" } else { "ipv6" }),
                    ),
                    ("protocol", Json::str(q.protocol.as_str())),
                    ("src", Json::opt_str(ev.src.or(q.src))),
                    ("dst", Json::str(q.dst)),
                    (
                        "sport",
                        Json::opt_int(match pkt.transport {
                            Transport::Tcp { sport, .. } | Transport::Udp { sport, .. } => {
                                Some(sport)
                            }
                            _ => None,
                        }),
                    ),
                    ("dport", Json::opt_int(q.port)),
                    ("icmp_type", Json::opt_int(icmp_type)),
                    ("via", Json::opt_str(q.via.as_ref())),
                    ("in", Json::opt_str(q.forwarded_from.as_ref())),
                ]),
            ),
            ("verdict", Json::str(verdict)),
            ("passes", Json::Bool(self.passes)),
            ("fate", Json::str(fate)),
            (
                "tcp_reset",
                Json::Bool(ev.fate == Fate::Rejected { tcp_reset: true }),
            ),
            ("oif", Json::opt_str(oif)),
            ("route", route_json(&ev.route)),
            ("rerouted", route_json(&ev.rerouted)),
            ("rule", ev.decided_by.as_ref().map_or(Json::Null, rule_json)),
            (
                "accepted",
                Json::Arr(ev.accepted_by.iter().map(rule_json).collect()),
            ),
            (
                "rewrite",
                ev.rewrite.as_ref().map_or(Json::Null, |r| {
                    Json::obj([
                        ("dst", Json::str(r.dst)),
                        ("dport", Json::opt_int(r.dport)),
                        ("rule", rule_json(&r.rule)),
                    ])
                }),
            ),
            (
                "masquerade",
                ev.masquerade.as_ref().map_or(Json::Null, |m| {
                    Json::obj([("oif", Json::str(&m.oif)), ("rule", rule_json(&m.rule))])
                }),
            ),
            (
                "logged",
                Json::Arr(ev.logged.iter().map(rule_json).collect()),
            ),
            ("chains", Json::Arr(chains)),
            ("text", Json::str(&self.text)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Interface, Network};
    use crate::nft::eval::{Route, RouteQuery};

    fn net() -> Network {
        Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![Prefix::new("127.0.0.1".parse().unwrap(), 8)],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: vec![Prefix::new("192.168.77.2".parse().unwrap(), 24)],
                },
                Interface {
                    name: "tun0".into(),
                    index: 3,
                    prefixes: vec![Prefix::new("10.42.0.2".parse().unwrap(), 24)],
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    fn routes(q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
        let s = q.dst.to_string();
        let oif = if let Some(dev) = q.oif {
            dev
        } else if s.starts_with("192.168.") || s == "198.51.100.7" || !q.dst.is_ipv4() {
            "eth0"
        } else {
            "tun0"
        };
        Ok(Some(Route {
            oif: oif.into(),
            local: false,
            src: None,
        }))
    }

    fn ask(rs: &Ruleset, dst: &str, port: Option<u16>, p: Protocol) -> Explanation {
        let q = Question::new(dst.parse().unwrap(), port, p);
        explain(rs, Basis::Plan, &q, &routes).unwrap()
    }

    #[test]
    fn a_user_reads_why() {
        let policy = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        let rs = plan::plan(&policy, &net()).unwrap();
        let e = ask(&rs, "192.168.2.5", Some(631), Protocol::Tcp);
        assert!(!e.passes);
        assert_eq!(
            e.text,
            "rejected with a TCP reset: 192.168.2.5 would leave by eth0, outside the tunnel (tun*), and is not a VPN gateway; it is not in a local network of eth0 (LAN private covers 192.168.77.0/24); rule: `meta l4proto tcp counter reject with tcp reset` (chain output)."
        );
        let e = ask(&rs, "192.168.77.9", Some(631), Protocol::Tcp);
        assert!(e.passes, "{e}");
        assert!(
            e.text.starts_with("passes: 192.168.77.9 is in 192.168.77.0/24, a local network of eth0 (LAN private); 192.168.77.9:631 (tcp) leaves by eth0; rule: `oifname \"eth0\" ip daddr 192.168.77.0/24 accept`"),
            "{e}"
        );
        // DNS to the LAN router: rewritten, and let into the tunnel by dns_guard.
        let e = ask(&rs, "192.168.77.1", Some(53), Protocol::Udp);
        assert!(e.passes, "{e}");
        assert_eq!(
            e.text,
            "passes: DNS is rewritten to the VPN's resolver; 192.168.77.1:53 (udp) leaves by tun0 rewritten to 10.42.0.1:53 (`meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53`), its source masqueraded to the address of tun0; rule: `ct status dnat ip daddr 10.42.0.1 udp dport 53 accept` (chain output), then `oifname \"tun*\" accept` (chain dns_guard)."
        );
        // From a socket bound to eth0, the rewritten query would leave in clear.
        let mut q = Question::new("192.168.77.1".parse().unwrap(), Some(53), Protocol::Udp);
        q.via = Some("eth0".into());
        let e = explain(&rs, Basis::Plan, &q, &routes).unwrap();
        assert!(!e.passes);
        assert_eq!(
            e.text,
            "dropped: DNS is rewritten to 10.42.0.1:53 (the VPN's resolver) and may leave only through the tunnel (tun*), but this socket is bound to eth0; rule: `udp dport 53 counter drop` (chain dns_guard)."
        );
        // The tunnel down: every route goes by eth0, and DNS is dropped at postrouting.
        let down = |q: &RouteQuery<'_>| -> Result<Option<Route>, String> {
            Ok(Some(Route {
                oif: q.oif.unwrap_or("eth0").into(),
                local: false,
                src: None,
            }))
        };
        let q = Question::new("198.51.100.53".parse().unwrap(), Some(53), Protocol::Udp);
        let e = explain(&rs, Basis::Plan, &q, &down).unwrap();
        assert_eq!(
            e.text,
            "dropped: DNS is rewritten to 10.42.0.1:53 (the VPN's resolver) and may leave only through the tunnel (tun*), but 10.42.0.1 is routed via eth0 (is the VPN connected?); rule: `udp dport 53 counter drop` (chain dns_guard)."
        );
        // Forwarded: the gateway is no clear path for a container.
        let mut q = Question::new("198.51.100.7".parse().unwrap(), Some(1194), Protocol::Udp);
        q.forwarded_from = Some("docker0".into());
        q.src = Some("172.17.0.2".parse().unwrap());
        let e = explain(&rs, Basis::Plan, &q, &routes).unwrap();
        assert_eq!(
            e.text,
            "rejected (ICMP port unreachable): 198.51.100.7 is a VPN gateway, and forwarded traffic gets no clear path to it (it would leave by eth0, outside the tunnel (tun*)); a container or VM reaches the VPN through this host's tunnel; rule: `ip daddr @gateways4 counter reject` (chain forward)."
        );
        // Forwarded DNS is rewritten and goes through the tunnel.
        let mut q = Question::new("192.168.77.1".parse().unwrap(), Some(53), Protocol::Udp);
        q.forwarded_from = Some("docker0".into());
        q.src = Some("172.17.0.2".parse().unwrap());
        let e = explain(&rs, Basis::Plan, &q, &routes).unwrap();
        assert!(e.passes, "{e}");
        assert!(e.text.contains("rewritten to 10.42.0.1:53"), "{e}");
        assert!(
            e.text
                .ends_with("rule: `oifname \"tun*\" accept` (chain forward)."),
            "{e}"
        );
        // Blocking: no gateway is open.
        let block = Policy::builder().mode(Mode::Block).build().unwrap();
        let brs = plan::plan(&block, &net()).unwrap();
        let e = ask(&brs, "198.51.100.7", Some(443), Protocol::Tcp);
        assert_eq!(
            e.text,
            "rejected with a TCP reset: 198.51.100.7 would leave by eth0, outside the tunnel (tun*), and no VPN gateway is open (blocked: no gateway); it is not in a local network of eth0 (LAN private covers 192.168.77.0/24); rule: `meta l4proto tcp counter reject with tcp reset` (chain output)."
        );
        let e = ask(&rs, "203.0.113.10", Some(53), Protocol::Udp);
        assert!(e.passes);
        assert!(e.text.contains("goes through the tunnel"), "{e}");
        assert!(e.text.contains("rewritten to 10.42.0.1:53"), "{e}");
        assert!(e.text.contains("masqueraded to the address of tun0"), "{e}");
        let e = ask(&rs, "198.51.100.7", None, Protocol::Icmp);
        assert!(e.text.contains("is a VPN gateway"), "{e}");
        let json = e.to_json().pretty();
        assert!(
            json.contains("\"schema\": \"bitmask-root/explain\""),
            "{json}"
        );
        assert!(json.contains("\"verdict\": \"pass\""), "{json}");
    }
}
