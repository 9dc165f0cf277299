//! `firewall status`: the running firewall in words or JSON, for users and clients: its state
//! (the `isup` judgement), gateways, the resolver and whether it is routed through the
//! tunnel, the local networks it opens per interface, forwarding, and how many packets each
//! kind of refusing rule stopped since start (their counters, read back over netlink).
//!
//! The counters never change the state: the read-back's canonical snapshot leaves counter
//! values out, so a table that refused a million packets is as untouched as a fresh one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::discovery::Network;
use crate::error::Error;
use crate::firewall::explain::{lan_rules, policy_of};
use crate::firewall::json::Json;
use crate::firewall::route::KernelRoutes;
use crate::firewall::status::{judge, Status};
use crate::nft::decode::{self, Counter, Running};
use crate::nft::eval::{stage_of, RouteQuery, Routing, Stage};
use crate::plan::{self, ChainKind, Match, Prefix, Ruleset};
use crate::policy::{Mode, Policy, Profile};

/// The version of the JSON that [`Report::to_json`] prints (`bitmask-root/status`).
pub const JSON_VERSION: u32 = 1;

/// What kind of packets a refusing rule stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalKind {
    /// Traffic of this host that would leave outside the tunnel.
    OutsideTunnel,
    /// DNS that would leave outside the tunnel.
    Dns,
    /// Forwarded traffic (containers, VMs) that would leave outside the tunnel.
    Forwarded,
}

impl RefusalKind {
    /// Every kind, in report order.
    pub const ALL: [RefusalKind; 3] = [
        RefusalKind::OutsideTunnel,
        RefusalKind::Dns,
        RefusalKind::Forwarded,
    ];
    /// The key in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            RefusalKind::OutsideTunnel => "outside_tunnel",
            RefusalKind::Dns => "dns",
            RefusalKind::Forwarded => "forwarded",
        }
    }
    /// The words in the report.
    pub fn words(self) -> &'static str {
        match self {
            RefusalKind::OutsideTunnel => "outside the tunnel",
            RefusalKind::Dns => "DNS",
            RefusalKind::Forwarded => "forwarded",
        }
    }
    /// The kind of a refusing rule of chain hooked at `stage`.
    pub fn of(stage: Stage, rule: &plan::Rule) -> RefusalKind {
        if stage == Stage::Forward {
            RefusalKind::Forwarded
        } else if rule
            .matches
            .iter()
            .any(|m| matches!(m, Match::Dport(_, 53)))
        {
            RefusalKind::Dns
        } else {
            RefusalKind::OutsideTunnel
        }
    }
}

/// One counted rule and what it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedRule {
    /// Its chain.
    pub chain: String,
    /// Its position in the chain, from 0.
    pub index: usize,
    /// The rule in nft syntax.
    pub text: String,
    /// What it stops.
    pub kind: RefusalKind,
    /// What it counted since the table was applied.
    pub counter: Counter,
}

/// Where the resolver that DNS is rewritten to is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverRoute {
    /// The resolver.
    pub address: Ipv4Addr,
    /// The interface its route goes by (`None`: no route).
    pub oif: Option<String>,
    /// Whether that is the tunnel.
    pub through_tunnel: bool,
}

/// Forwarded traffic (containers, VMs, shared connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// Whether IPv4 forwarding is on (`net.ipv4.ip_forward`), when readable.
    pub ip_forward: Option<bool>,
    /// Whether the running firewall has rules for forwarded traffic (a chain hooked at
    /// forward: `--forward on`, the default profile's default).
    pub filtered: bool,
    /// Whether forwarded DNS (port 53) may leave only through the tunnel or to a gateway:
    /// the `dns_guard` chain, at postrouting, sees every packet that leaves, forwarded ones
    /// too (the default profile, also with `--forward off`; not `--compat`).
    pub dns_guarded: bool,
}

/// The running firewall, for a user or a client to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The `isup` judgement.
    pub status: Status,
    /// The policy the table records, when it is ours.
    pub policy: Option<Policy>,
    /// Where the resolver is routed.
    pub resolver: Option<ResolverRoute>,
    /// The local networks open, per interface, as the running rules open them.
    pub lan: Vec<(String, Vec<Prefix>)>,
    /// Forwarded traffic; `None` when the firewall is down.
    pub forwarding: Option<Forwarding>,
    /// The guard's state, where a guard watches the table (`None`: no guard).
    pub guard: Option<String>,
    /// The counted rules; `None` when the running rules could not be read (changed by
    /// another program into something bitmask-root does not write).
    pub refused: Option<Vec<CountedRule>>,
}

impl Report {
    /// The state word: `up`, `down`, `stale`, `tampered`.
    pub fn state(&self) -> &'static str {
        match self.status {
            Status::Up(_) => "up",
            Status::Down => "down",
            Status::Stale { .. } => "stale",
            Status::Tampered { .. } => "tampered",
        }
    }

    /// What the rules of `kind` (or all, with `None`) refused.
    pub fn total(&self, kind: Option<RefusalKind>) -> Counter {
        let mut c = Counter {
            packets: 0,
            bytes: 0,
        };
        for r in self.refused.iter().flatten() {
            if kind.is_none_or(|k| k == r.kind) {
                c.packets += r.counter.packets;
                c.bytes += r.counter.bytes;
            }
        }
        c
    }

    /// The report as JSON (`schema` `bitmask-root/status`, `version` [`JSON_VERSION`]; the
    /// README documents every field).
    pub fn to_json(&self) -> Json {
        let counter = |c: Counter| {
            Json::obj([
                ("packets", Json::Int(c.packets.into())),
                ("bytes", Json::Int(c.bytes.into())),
            ])
        };
        let reason = match &self.status {
            Status::Stale { reason, .. } | Status::Tampered { reason } => Some(reason.clone()),
            Status::Up(_) | Status::Down => None,
        };
        let p = self.policy.as_ref();
        Json::obj([
            ("schema", Json::str("bitmask-root/status")),
            ("version", Json::Int(JSON_VERSION.into())),
            ("state", Json::str(self.state())),
            ("reason", Json::opt_str(reason)),
            ("profile", Json::opt_str(p.map(|p| p.profile().as_str()))),
            ("mode", Json::opt_str(p.map(|p| p.mode().as_str()))),
            (
                "gateways",
                Json::Arr(
                    p.map(|p| p.gateways().iter().map(Json::str).collect())
                        .unwrap_or_default(),
                ),
            ),
            ("tunnel", Json::opt_str(p.map(|p| p.tunnel()))),
            (
                "resolver",
                self.resolver.as_ref().map_or(Json::Null, |r| {
                    Json::obj([
                        ("address", Json::str(r.address)),
                        ("routed_via", Json::opt_str(r.oif.as_ref())),
                        ("through_tunnel", Json::Bool(r.through_tunnel)),
                    ])
                }),
            ),
            (
                "lan",
                match p {
                    None => Json::Null,
                    Some(p) => Json::obj([
                        ("mode", Json::str(p.lan())),
                        (
                            "interfaces",
                            Json::Arr(
                                self.lan
                                    .iter()
                                    .map(|(dev, prefixes)| {
                                        Json::obj([
                                            ("name", Json::str(dev)),
                                            (
                                                "prefixes",
                                                Json::Arr(prefixes.iter().map(Json::str).collect()),
                                            ),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ]),
                },
            ),
            (
                "forwarding",
                self.forwarding.as_ref().map_or(Json::Null, |f| {
                    Json::obj([
                        ("ip_forward", f.ip_forward.map_or(Json::Null, Json::Bool)),
                        ("filtered", Json::Bool(f.filtered)),
                        ("dns_guarded", Json::Bool(f.dns_guarded)),
                    ])
                }),
            ),
            ("guard", Json::opt_str(self.guard.as_ref())),
            (
                "refused",
                match &self.refused {
                    None => Json::Null,
                    Some(rules) => Json::obj([
                        ("total", counter(self.total(None))),
                        (
                            "by_kind",
                            Json::Obj(
                                RefusalKind::ALL
                                    .iter()
                                    .map(|k| (k.key().to_string(), counter(self.total(Some(*k)))))
                                    .collect(),
                            ),
                        ),
                        (
                            "rules",
                            Json::Arr(
                                rules
                                    .iter()
                                    .map(|r| {
                                        Json::obj([
                                            ("chain", Json::str(&r.chain)),
                                            ("index", Json::Int(r.index as i128)),
                                            ("rule", Json::str(&r.text)),
                                            ("kind", Json::str(r.kind.key())),
                                            ("packets", Json::Int(r.counter.packets.into())),
                                            ("bytes", Json::Int(r.counter.bytes.into())),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ]),
                },
            ),
        ])
    }
}

/// `1204` as `1,204`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Down => {
                return writeln!(
                    f,
                    "firewall: down (no table inet {}): nothing is blocked",
                    plan::TABLE
                )
            }
            Status::Up(_) => writeln!(f, "firewall: up, untouched and planned for this network")?,
            Status::Stale { reason, .. } => writeln!(
                f,
                "firewall: stale, the network changed since start ({reason}); run firewall start again"
            )?,
            Status::Tampered { reason } => writeln!(
                f,
                "firewall: changed by another program ({reason}); run firewall start again"
            )?,
        }
        if let Some(p) = &self.policy {
            if p.profile() == Profile::Compat {
                writeln!(f, "profile: compat (LEAKY: the original's rules)")?;
            }
            if p.mode() == Mode::Block {
                writeln!(
                    f,
                    "blocked: no gateway (firewall block); nothing leaves outside the tunnel but the local network, DHCP, neighbour discovery, SSDP and mDNS"
                )?;
            } else {
                let gws: Vec<String> = p.gateways().iter().map(IpAddr::to_string).collect();
                writeln!(f, "gateways: {}", gws.join(", "))?;
            }
            writeln!(f, "tunnel: {}", p.tunnel())?;
        }
        if let Some(r) = &self.resolver {
            let compat = self
                .policy
                .as_ref()
                .is_some_and(|p| p.profile() == Profile::Compat);
            match (&r.oif, r.through_tunnel) {
                (Some(oif), true) => writeln!(
                    f,
                    "DNS: rewritten to {}, routed through the tunnel ({oif})",
                    r.address
                )?,
                (Some(oif), false) if compat => writeln!(
                    f,
                    "DNS: rewritten to {}, routed via {oif}, outside the tunnel (--compat lets it leave in clear)",
                    r.address
                )?,
                (Some(oif), false) => writeln!(
                    f,
                    "DNS will fail: {} is routed via {oif}, not the tunnel; queries are refused until the VPN routes it",
                    r.address
                )?,
                (None, _) => writeln!(
                    f,
                    "DNS will fail: there is no route to {} (is the VPN connected?)",
                    r.address
                )?,
            }
        }
        if let Some(p) = &self.policy {
            let lan: Vec<String> = self
                .lan
                .iter()
                .map(|(dev, ps)| {
                    let ps: Vec<String> = ps.iter().map(Prefix::to_string).collect();
                    format!("{dev} {}", ps.join(", "))
                })
                .collect();
            if lan.is_empty() {
                writeln!(f, "LAN ({}): none open", p.lan())?;
            } else {
                writeln!(f, "LAN ({}): {}", p.lan(), lan.join("; "))?;
            }
        }
        if let Some(fw) = &self.forwarding {
            let on = match fw.ip_forward {
                Some(true) => "on",
                Some(false) => "off",
                None => "unknown",
            };
            writeln!(
                f,
                "forwarding: {on} (ip_forward); forwarded traffic is {}",
                match (fw.filtered, fw.dns_guarded) {
                    (true, _) => "filtered like this host's",
                    (false, true) =>
                        "not filtered by this firewall, but for DNS, which leaves only through the tunnel",
                    (false, false) => "not filtered by this firewall",
                }
            )?;
        }
        if let Some(g) = &self.guard {
            writeln!(f, "guard: {g}")?;
        }
        match &self.refused {
            None => writeln!(
                f,
                "blocked: unknown (the running rules are not bitmask-root's)"
            )?,
            Some(_) => {
                let parts: Vec<String> = RefusalKind::ALL
                    .iter()
                    .map(|k| (k, self.total(Some(*k)).packets))
                    .filter(|(k, n)| *n > 0 || **k != RefusalKind::Forwarded)
                    .map(|(k, n)| format!("{} {}", thousands(n), k.words()))
                    .collect();
                let total = self.total(None).packets;
                writeln!(
                    f,
                    "blocked {} packet{} since start: {}",
                    thousands(total),
                    if total == 1 { "" } else { "s" },
                    parts.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

/// The counted rules of a running ruleset, with their counters.
pub fn counted_rules(running: &Running) -> Vec<CountedRule> {
    let mut out = Vec::new();
    for chain in &running.ruleset.chains {
        for (index, rule) in chain.rules.iter().enumerate() {
            if let Some(counter) = running.counters.get(&(chain.name.clone(), index)) {
                out.push(CountedRule {
                    chain: chain.name.clone(),
                    index,
                    text: crate::render::rule_text(rule),
                    kind: RefusalKind::of(stage_of(chain.hook), rule),
                    counter: *counter,
                });
            }
        }
    }
    out
}

/// The local networks a ruleset opens, grouped by interface in rule order.
pub fn lan_by_interface(rs: &Ruleset) -> Vec<(String, Vec<Prefix>)> {
    let mut out: Vec<(String, Vec<Prefix>)> = Vec::new();
    for (dev, p) in lan_rules(rs) {
        match out.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, ps)) => ps.push(p),
            None => out.push((dev, vec![p])),
        }
    }
    out
}

/// Builds the report from what was read. Pure apart from `routes`.
pub fn build(
    status: Status,
    running: Option<&Running>,
    routes: &dyn Routing,
    ip_forward: Option<bool>,
) -> Report {
    if status == Status::Down {
        return Report {
            status,
            policy: None,
            resolver: None,
            lan: Vec::new(),
            forwarding: None,
            guard: None,
            refused: None,
        };
    }
    let policy = running.and_then(|r| policy_of(&r.ruleset));
    let resolver = policy.as_ref().map(|p| {
        let q = RouteQuery {
            dst: IpAddr::V4(p.resolver()),
            src: None,
            oif: None,
            iif: None,
        };
        let oif = routes.route(&q).ok().flatten().map(|r| r.oif);
        ResolverRoute {
            address: p.resolver(),
            through_tunnel: oif.as_deref().is_some_and(|o| p.tunnel().matches(o)),
            oif,
        }
    });
    let hooked = |stage: Stage, kind: ChainKind| {
        running.is_some_and(|r| {
            r.ruleset
                .chains
                .iter()
                .any(|c| stage_of(c.hook) == stage && c.kind == kind)
        })
    };
    let filtered = hooked(Stage::Forward, ChainKind::Filter);
    let dns_guarded = hooked(Stage::Postrouting, ChainKind::Filter);
    Report {
        status,
        resolver,
        lan: running
            .map(|r| lan_by_interface(&r.ruleset))
            .unwrap_or_default(),
        forwarding: Some(Forwarding {
            ip_forward,
            filtered,
            dns_guarded,
        }),
        guard: None,
        refused: running.map(counted_rules),
        policy,
    }
}

/// Reads the firewall of the calling thread's namespace and reports on it. Needs root. Call
/// it outside any async context (it runs its own).
pub fn report() -> Result<Report, Error> {
    let (routes, net): (KernelRoutes, Network) = KernelRoutes::open()?;
    let Some(kernel) = crate::readback::read_table(plan::TABLE)? else {
        return Ok(build(Status::Down, None, &routes, None));
    };
    let status = judge(&kernel, &net)?;
    let running = match decode::read_running(plan::TABLE) {
        Ok(r) => r,
        Err(decode::DecodeError::Transport(e)) => return Err(e.into()),
        Err(_) => None,
    };
    let ip_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .ok()
        .map(|v| v.trim() == "1");
    Ok(build(status, running.as_ref(), &routes, ip_forward))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Interface;
    use crate::nft::eval::Route;
    use crate::nft::readback::KernelTable;
    use crate::policy::LanMode;

    fn net() -> Network {
        let p = |a: &str, l| Prefix::new(a.parse().unwrap(), l);
        Network {
            interfaces: vec![
                Interface {
                    name: "lo".into(),
                    index: 1,
                    prefixes: vec![p("127.0.0.1", 8)],
                },
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    prefixes: vec![p("192.168.1.2", 24)],
                },
            ],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    /// The report on `policy`'s plan as if it ran (the resolver routed into tun0).
    fn report_of(policy: &Policy) -> Report {
        let mut rs = plan::plan(policy, &net()).unwrap();
        let running = Running {
            ruleset: {
                rs.record = plan::record(policy);
                rs.clone()
            },
            kernel: KernelTable {
                comment: None,
                snapshot: crate::readback::snapshot_of(&rs).unwrap(),
                set_elements: Default::default(),
            },
            counters: rs
                .chains
                .iter()
                .flat_map(|c| {
                    c.rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.counter)
                        .map(|(i, _)| {
                            (
                                (c.name.clone(), i),
                                Counter {
                                    packets: 2,
                                    bytes: 100,
                                },
                            )
                        })
                })
                .collect(),
        };
        let routes = |_: &RouteQuery<'_>| -> Result<Option<Route>, String> {
            Ok(Some(Route {
                oif: "tun0".into(),
                local: false,
                src: None,
            }))
        };
        build(
            Status::Up(policy.clone()),
            Some(&running),
            &routes,
            Some(true),
        )
    }

    #[test]
    fn forwarding_mode_and_blocking_read_from_the_rules() {
        let gw = "198.51.100.7".parse().unwrap();
        let connect = |f: fn(crate::policy::PolicyBuilder) -> crate::policy::PolicyBuilder| {
            f(Policy::builder().gateway(gw)).build().unwrap()
        };
        let cases = [
            (connect(|b| b), true, true),
            (connect(|b| b.forward(false)), false, true),
            (connect(|b| b.profile(Profile::Compat)), false, false),
            (
                Policy::builder().mode(Mode::Block).build().unwrap(),
                true,
                true,
            ),
        ];
        for (policy, filtered, guarded) in cases {
            let r = report_of(&policy);
            let fw = r.forwarding.clone().unwrap();
            assert_eq!(
                (fw.filtered, fw.dns_guarded),
                (filtered, guarded),
                "{policy:?}"
            );
            let json = r.to_json().pretty();
            assert!(
                json.contains(&format!("\"filtered\": {filtered}")),
                "{json}"
            );
            assert!(
                json.contains(&format!("\"mode\": \"{}\"", policy.mode().as_str())),
                "{json}"
            );
            assert!(json.contains("\"guard\": null"), "{json}");
            let text = r.to_string();
            let want = match (filtered, guarded) {
                (true, _) => "forwarded traffic is filtered like this host's",
                (false, true) => "not filtered by this firewall, but for DNS",
                (false, false) => "forwarded traffic is not filtered by this firewall\n",
            };
            assert!(text.contains(want), "{text}");
            // Every counted rule counted 2 packets; the forward chain's are "forwarded".
            let forwarded = r.total(Some(RefusalKind::Forwarded)).packets;
            assert_eq!(forwarded > 0, filtered, "{text}");
            // DNS refusals: output's port-53 rejects and dns_guard's drops (not --compat).
            assert_eq!(
                r.total(Some(RefusalKind::Dns)).packets > 0,
                guarded,
                "{text}"
            );
        }
        let block = report_of(
            &Policy::builder()
                .mode(Mode::Block)
                .lan(LanMode::Off)
                .build()
                .unwrap(),
        );
        let text = block.to_string();
        assert!(
            text.contains("blocked: no gateway (firewall block)"),
            "{text}"
        );
        assert!(!text.contains("gateways:"), "{text}");
        assert!(block.to_json().pretty().contains("\"gateways\": []"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
