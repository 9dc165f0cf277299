//! The command line: argv → what to do, and the exit code. Compatible with both grammars of
//! bitmask-root 19 (the released one, configured by `UDP`/`DEBUG`/`TEST` in the environment,
//! and the one on main with `--udp`/`--debug`/`--test`).
//!
//! Exit codes: 0 success, 1 failure at run time, 2 usage error. Every failure prints one line
//! on stderr starting with `bitmask-root: `. A refused command changes nothing.
//!
//! The commands and options are defined once, in [`spec`]: the parser looks them up there,
//! and `--help`, the man page and the shell completions are generated from it (see [`spec`]
//! for how to add an option or a command).

use std::net::Ipv4Addr;
use std::process::ExitCode;

use crate::firewall::explain::{Protocol, Question};
use crate::policy::{self, IfPattern, LanMode, Mode, Policy, PolicyBuilder, Profile};

mod guarded;

/// The version printed by `bitmask-root version`: the original's protocol version first, so
/// clients that compare it keep working, then ours.
pub const VERSION: &str = concat!("19 (bitmask-root-rs ", env!("CARGO_PKG_VERSION"), ")");

pub mod complete;
pub mod help;
pub mod man;
pub mod spec;

use spec::{CmdId, OptId};

/// The help text, generated from [`spec`] (see [`help::text`]).
pub fn help() -> String {
    help::text()
}

/// A usage error: exit 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<policy::PolicyError> for UsageError {
    fn from(e: policy::PolicyError) -> Self {
        usage(e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(format!("{} (see bitmask-root --help)", msg.into()))
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print help.
    Help,
    /// Print the version.
    Version,
    /// `firewall start`.
    FirewallStart(Policy),
    /// `firewall block`: a policy in [`Mode::Block`].
    FirewallBlock(Policy),
    /// `firewall stop`.
    FirewallStop,
    /// `firewall isup`.
    FirewallIsup,
    /// `firewall guard [GATEWAY...]`: a guard for this policy (a blocking one without
    /// gateways).
    FirewallGuard(Policy),
    /// `firewall explain DEST[:PORT] [tcp|udp|icmp] [OPTIONS]`.
    FirewallExplain(ExplainArgs),
    /// `firewall status [--json]`.
    FirewallStatus {
        /// Print JSON.
        json: bool,
    },
    /// `fw-email start UID` (the raw UID word, resolved by the email module).
    EmailStart(String),
    /// `fw-email stop`.
    EmailStop,
    /// `fw-email isup`.
    EmailIsup,
    /// `openvpn start ARGS...` (the words after `start`).
    OpenvpnStart(Vec<String>),
    /// `openvpn stop`.
    OpenvpnStop,
    /// `__generate WHAT`: prints a generated file (the man page, a completion script) for
    /// packaging. Not listed in the help.
    Generate(Generated),
}

/// What `bitmask-root __generate WHAT` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// The man page, bitmask-root(8), in roff.
    Man,
    /// The bash completion script.
    Bash,
    /// The zsh completion script.
    Zsh,
    /// The fish completion script.
    Fish,
}

impl Generated {
    /// Every generated file, with the word that asks for it.
    pub const ALL: [(&'static str, Generated); 4] = [
        ("man", Generated::Man),
        ("bash", Generated::Bash),
        ("zsh", Generated::Zsh),
        ("fish", Generated::Fish),
    ];

    /// The text of the file.
    pub fn text(self) -> String {
        match self {
            Generated::Man => man::page(),
            Generated::Bash => complete::bash(),
            Generated::Zsh => complete::zsh(),
            Generated::Fish => complete::fish(),
        }
    }
}

/// The hidden command that prints generated files (see [`Generated`]).
pub const GENERATE: &str = "__generate";

/// What `firewall explain` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainArgs {
    /// The packet.
    pub question: Question,
    /// Print JSON.
    pub json: bool,
    /// With `--dry-run`: the policy to plan, and whether no gateway was given (the policy then
    /// blocks, [`Mode::Block`]: the same rules with no gateway open). `None`: ask the running
    /// firewall.
    pub plan: Option<(Policy, bool)>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// `--dry-run`.
    pub dry_run: bool,
}

#[derive(Default)]
struct Globals {
    resolver: Option<(String, Ipv4Addr)>,
    debug: bool,
    lan: Option<LanMode>,
    compat: bool,
    dry_run: bool,
    tunnel: Option<IfPattern>,
    forward: Option<bool>,
}

/// Parses argv (without the program name). `env` reads an environment variable.
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, UsageError> {
    let mut g = Globals::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if !arg.starts_with('-') {
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        let mut set_resolver = |label: &str, addr: Ipv4Addr| -> Result<(), UsageError> {
            match &g.resolver {
                Some((prev, a)) if *a != addr => Err(usage(format!(
                    "{prev} and {label} choose different resolvers; give only one"
                ))),
                _ => {
                    g.resolver = Some((label.to_string(), addr));
                    Ok(())
                }
            }
        };
        let Some(opt) = spec::option(flag) else {
            return Err(usage(format!("unknown option {flag:?}")));
        };
        if inline.is_some() && opt.value.is_none() {
            return Err(usage(format!("option {flag} takes no value")));
        }
        match opt.id {
            OptId::Help => {
                return Ok(Invocation {
                    command: Command::Help,
                    dry_run: false,
                })
            }
            OptId::Version => {
                return Ok(Invocation {
                    command: Command::Version,
                    dry_run: false,
                })
            }
            OptId::Udp => set_resolver("--udp", policy::RESOLVER_UDP)?,
            OptId::Tcp => set_resolver("--tcp", policy::RESOLVER_TCP)?,
            OptId::Resolver => {
                let v = value(flag)?;
                let addr = policy::parse_resolver(&v)?;
                set_resolver(flag, addr)?;
            }
            OptId::Debug => g.debug = true,
            OptId::Lan => g.lan = Some(value(flag)?.parse()?),
            OptId::Tunnel => g.tunnel = Some(value(flag)?.parse()?),
            OptId::Forward => {
                g.forward = Some(match value(flag)?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        return Err(usage(format!("invalid --forward {other:?}: use on or off")))
                    }
                })
            }
            OptId::Compat => g.compat = true,
            OptId::DryRun => g.dry_run = true,
            OptId::Local => return Err(usage(format!("unknown option {flag:?}"))),
        }
        i += 1;
    }
    let rest = &args[i..];
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let no_more = |extra: &[&str], what: &str| -> Result<(), UsageError> {
        match extra.first() {
            None => Ok(()),
            Some(w) if w.starts_with('-') => Err(usage(format!(
                "option {w:?} must come before the command, as in: bitmask-root {w} {what}"
            ))),
            Some(w) => Err(usage(format!("unexpected argument {w:?} after {what}"))),
        }
    };
    if let [GENERATE, what @ ..] = words.as_slice() {
        let known: Vec<&str> = Generated::ALL.iter().map(|(w, _)| *w).collect();
        let command = match what {
            [w] => Generated::ALL
                .iter()
                .find(|(name, _)| name == w)
                .map(|(_, g)| Command::Generate(*g)),
            _ => None,
        }
        .ok_or_else(|| usage(format!("{GENERATE} needs one of {}", spec::or_list(&known))))?;
        return Ok(Invocation {
            command,
            dry_run: g.dry_run,
        });
    }
    let (cmd, extra) = spec::command(&words).map_err(|e| usage(e.to_string()))?;
    let what = cmd.words.join(" ");
    let command = match cmd.id {
        CmdId::Help => Command::Help,
        CmdId::Version => {
            no_more(extra, &what)?;
            Command::Version
        }
        CmdId::FirewallStart => Command::FirewallStart(firewall_policy(extra, &g, env)?),
        CmdId::FirewallGuard => Command::FirewallGuard(guard_policy(extra, &g, env)?),
        CmdId::FirewallBlock => {
            if let Some(w) = extra.first().filter(|w| !w.starts_with('-')) {
                return Err(usage(format!(
                    "unexpected argument {w:?} after firewall block: it takes no argument (to let a VPN connect, use firewall start GATEWAY...)"
                )));
            }
            no_more(extra, &what)?;
            Command::FirewallBlock(policy_builder(&g, env)?.mode(Mode::Block).build()?)
        }
        CmdId::FirewallStop => {
            no_more(extra, &what)?;
            Command::FirewallStop
        }
        CmdId::FirewallIsup => {
            no_more(extra, &what)?;
            Command::FirewallIsup
        }
        CmdId::FirewallExplain => Command::FirewallExplain(explain_args(extra, &g, env)?),
        CmdId::FirewallStatus => match extra {
            [] => Command::FirewallStatus { json: false },
            ["--json"] => Command::FirewallStatus { json: true },
            [w, ..] if w.starts_with('-') && *w != "--json" => {
                return Err(usage(format!(
                    "unknown option {w:?} of firewall status: only --json"
                )))
            }
            [_, extra, ..] | [extra] => {
                return Err(usage(format!(
                    "unexpected argument {extra:?} after firewall status"
                )))
            }
        },
        CmdId::EmailStart => {
            let rest: Vec<&str> = extra.iter().copied().filter(|w| *w != "restart").collect();
            match rest.as_slice() {
                [uid] => Command::EmailStart(uid.to_string()),
                [] => {
                    return Err(usage(
                        "fw-email start needs the UID (or user name) of the mail user",
                    ))
                }
                [_, extra, ..] => {
                    return Err(usage(format!(
                        "unexpected argument {extra:?} after fw-email start UID"
                    )))
                }
            }
        }
        CmdId::EmailStop => {
            no_more(extra, &what)?;
            Command::EmailStop
        }
        CmdId::EmailIsup => {
            no_more(extra, &what)?;
            Command::EmailIsup
        }
        CmdId::OpenvpnStart => Command::OpenvpnStart(extra.iter().map(|s| s.to_string()).collect()),
        CmdId::OpenvpnStop => Command::OpenvpnStop,
    };
    Ok(Invocation {
        command,
        dry_run: g.dry_run,
    })
}

fn firewall_policy(
    words: &[&str],
    g: &Globals,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, UsageError> {
    let gws = match words.first() {
        Some(&"restart") => &words[1..],
        _ => words,
    };
    if let Some(flag) = gws.iter().find(|w| w.starts_with('-')) {
        return Err(usage(format!(
            "option {flag:?} must come before the command, as in: bitmask-root {flag} firewall start GATEWAY..."
        )));
    }
    if gws.len() > policy::MAX_GATEWAYS {
        return Err(policy::PolicyError::TooManyGateways(gws.len()).into());
    }
    let b = policy_builder(g, env)?;
    let mut gateways = Vec::with_capacity(gws.len());
    for gw in gws {
        gateways.push(policy::parse_gateway(gw)?);
    }
    Ok(b.gateways(gateways).build()?)
}

/// `firewall guard [GATEWAY...]`: the policy of `firewall start` for the gateways given, or,
/// with none, the blocking policy of `firewall block` (which a later `firewall start
/// GATEWAY...` hands to the guard).
fn guard_policy(
    words: &[&str],
    g: &Globals,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, UsageError> {
    match words.first() {
        None => Ok(policy_builder(g, env)?.mode(Mode::Block).build()?),
        Some(&"restart") => Err(usage(
            "unexpected argument \"restart\" after firewall guard: give the gateways, or none to guard a blocking firewall",
        )),
        Some(_) => firewall_policy(words, g, env),
    }
}

/// The policy the global options and the environment ask for, gateways still to add.
fn policy_builder(
    g: &Globals,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PolicyBuilder, UsageError> {
    let resolver = match (&g.resolver, env("UDP")) {
        (Some((_, addr)), _) => *addr,
        (None, Some(v)) if v == "1" => policy::RESOLVER_UDP,
        (None, Some(_)) => policy::RESOLVER_TCP,
        (None, None) => policy::RESOLVER_UDP,
    };
    let env_on = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    let mut b = Policy::builder()
        .resolver(resolver)
        .debug(g.debug || env_on("DEBUG") || env_on("TEST"))
        .lan(g.lan.unwrap_or_default())
        .profile(if g.compat {
            Profile::Compat
        } else {
            Profile::Default
        });
    if let Some(t) = &g.tunnel {
        b = b.tunnel(t.clone());
    }
    match g.forward {
        Some(true) if g.compat => return Err(usage(
            "--compat has no forwarding rules (as the original); drop --forward on, or --compat",
        )),
        Some(on) => b = b.forward(on),
        None => {}
    }
    Ok(b)
}

/// An interface name as the kernel takes it (1 to 15 bytes, no `/`, no space).
fn interface(flag: &str, v: &str) -> Result<String, UsageError> {
    let ok = !v.is_empty()
        && v.len() <= 15
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@:".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(usage(format!(
            "{flag} needs an interface name like eth0, got {v:?}"
        )))
    }
}

fn port_value(flag: &str, v: &str) -> Result<u16, UsageError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 && !v.starts_with('0') && !v.starts_with('+') => Ok(p),
        _ => Err(usage(format!(
            "{flag} needs a port from 1 to 65535, got {v:?}"
        ))),
    }
}

/// `DEST`, `DEST:PORT`, `[IPV6]:PORT`, `IPV6%IFACE`: the address, the port, the zone.
fn destination(w: &str) -> Result<(std::net::IpAddr, Option<u16>, Option<String>), UsageError> {
    let bad = || {
        usage(format!(
            "invalid destination {w:?}: give an address (192.168.1.20, 2001:db8::1), with a port as 192.168.1.20:631 or [2001:db8::1]:53"
        ))
    };
    let (host, port) = if let Some(rest) = w.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_value("the destination", p)?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (h, port)
    } else if w.matches(':').count() == 1 {
        let (h, p) = w.split_once(':').ok_or_else(bad)?;
        (h, Some(port_value("the destination", p)?))
    } else {
        (w, None)
    };
    let (addr, zone) = match host.split_once('%') {
        Some((a, z)) => (a, Some(interface("the zone after %", z)?)),
        None => (host, None),
    };
    let ip = if addr.contains(':') {
        addr.parse::<std::net::Ipv6Addr>().map(std::net::IpAddr::V6)
    } else {
        addr.parse::<Ipv4Addr>().map(std::net::IpAddr::V4)
    }
    .map_err(|_| bad())?;
    if zone.is_some() && ip.is_ipv4() {
        return Err(bad());
    }
    Ok((ip, port, zone))
}

fn explain_args(
    words: &[&str],
    g: &Globals,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExplainArgs, UsageError> {
    let Some((dest, mut rest)) = words.split_first() else {
        return Err(usage(
            "firewall explain needs a destination, as in: firewall explain 192.168.1.20:631",
        ));
    };
    if dest.starts_with('-') {
        return Err(usage(format!(
            "firewall explain needs the destination first, before {dest:?}"
        )));
    }
    let (dst, port, zone) = destination(dest)?;
    let mut protocol = None;
    if let Some((w, more)) = rest.split_first() {
        protocol = match *w {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            _ => None,
        };
        if protocol.is_some() {
            rest = more;
        }
    }
    let protocol = match (protocol, port) {
        (Some(Protocol::Icmp), Some(_)) => {
            return Err(usage(
                "icmp has no port: give the destination without :PORT",
            ))
        }
        (Some(p @ (Protocol::Tcp | Protocol::Udp)), None) => {
            return Err(usage(format!(
                "{} needs a port: give the destination as ADDRESS:PORT",
                p.as_str()
            )))
        }
        (Some(p), _) => p,
        (None, Some(_)) => Protocol::Tcp,
        (None, None) => Protocol::Icmp,
    };
    let mut q = Question::new(dst, port, protocol);
    q.via = zone;
    let link_scope = match dst {
        std::net::IpAddr::V6(a) => {
            let s = a.segments();
            (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xff0f) == 0xff02
        }
        std::net::IpAddr::V4(_) => false,
    };
    let mut json = false;
    let mut gateways = Vec::new();
    let mut i = 0;
    while let Some(w) = rest.get(i) {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (*w, None),
        };
        let mut value = || -> Result<String, UsageError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            rest.get(i)
                .map(|v| v.to_string())
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag {
            "--json" if inline.is_none() => json = true,
            "--via" => q.via = Some(interface("--via", &value()?)?),
            "--in" => q.forwarded_from = Some(interface("--in", &value()?)?),
            "--src" => {
                let v = value()?;
                q.src = Some(v.parse().map_err(|_| {
                    usage(format!("--src needs an IPv4 or IPv6 address, got {v:?}"))
                })?);
            }
            "--sport" => q.sport = Some(port_value("--sport", &value()?)?),
            "--uid" => {
                let v = value()?;
                q.uid = Some(crate::email::parse_uid(&v).map_err(|e| usage(e.to_string()))?);
            }
            "--gateway" => gateways.push(value()?),
            w if w.starts_with('-') => {
                return Err(usage(format!(
                    "unknown option {w:?} of firewall explain: use --via, --in, --src, --sport, --uid, --gateway or --json"
                )))
            }
            w => return Err(usage(format!("unexpected argument {w:?} after firewall explain DEST"))),
        }
        i += 1;
    }
    if q.via.is_some() && q.forwarded_from.is_some() {
        return Err(usage(
            "--via (a socket of this host) and --in (a forwarded packet) exclude each other",
        ));
    }
    if link_scope && q.via.is_none() && q.forwarded_from.is_none() {
        return Err(usage(format!(
            "{dst} is link-local: give the interface, as {dst}%eth0 or with --via eth0"
        )));
    }
    if q.forwarded_from.is_some() && q.src.is_none() {
        return Err(usage(
            "a forwarded packet (--in) needs its source address: --src ADDR",
        ));
    }
    if let Some(src) = q.src {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(usage(format!(
                "--src {src} and the destination {dst} are of different families"
            )));
        }
    }
    if q.uid.is_some() && q.forwarded_from.is_some() {
        return Err(usage(
            "a forwarded packet has no owner: --uid goes with this host's packets",
        ));
    }
    let plan = if g.dry_run {
        // Without a gateway: the same rules with none open, as `firewall block` plans them.
        let policy = if gateways.is_empty() {
            policy_builder(g, env)?.mode(Mode::Block).build()?
        } else {
            let words: Vec<&str> = gateways.iter().map(String::as_str).collect();
            firewall_policy(&words, g, env)?
        };
        Some((policy, gateways.is_empty()))
    } else {
        if !gateways.is_empty() {
            return Err(usage(
                "--gateway goes with --dry-run: the running firewall has its own gateways",
            ));
        }
        None
    };
    Ok(ExplainArgs {
        question: q,
        json,
        plan,
    })
}

/// Runs the command line and returns the exit code. Prints to stdout and stderr.
pub fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect()
    {
        Ok(a) => a,
        Err(bad) => {
            eprintln!(
                "bitmask-root: argument {bad:?} is not valid UTF-8 (see bitmask-root --help)"
            );
            return ExitCode::from(2);
        }
    };
    let inv = match parse(&args, &|k| std::env::var(k).ok()) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("bitmask-root: {e}");
            return ExitCode::from(2);
        }
    };
    match run(inv) {
        Ok(code) => ExitCode::from(code),
        Err((code, msg)) => {
            eprintln!("bitmask-root: {msg}");
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<u8, (u8, String)>;

fn fail(e: crate::Error) -> (u8, String) {
    (e.exit_code(), e.to_string())
}

fn fail_openvpn(e: crate::openvpn::Error) -> (u8, String) {
    (e.exit_code(), e.to_string())
}

fn need_root() -> Result<(), (u8, String)> {
    if crate::sys::effective_uid() == 0 {
        Ok(())
    } else {
        Err(fail(crate::Error::NotRoot))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, (u8, String)> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(crate::Error::Runtime(e)))
}

/// Carries out a parsed invocation.
pub fn run(inv: Invocation) -> Outcome {
    use crate::firewall;
    match inv.command {
        Command::Help => {
            print!("{}", help());
            Ok(0)
        }
        Command::Generate(what) => {
            print!("{}", what.text());
            Ok(0)
        }
        Command::Version => {
            println!("{VERSION}");
            Ok(0)
        }
        Command::FirewallStart(policy) => {
            let rt = runtime()?;
            if inv.dry_run {
                let text = rt.block_on(firewall::dry_run(&policy)).map_err(fail)?;
                print!("{text}");
                if let Some(note) = rt.block_on(guarded::dry_run_note("start")) {
                    eprintln!("bitmask-root: --dry-run: {note}");
                }
                return Ok(0);
            }
            need_root()?;
            let summary = format!(
                "{} gateway{}, DNS to {}, LAN {}{}",
                policy.gateways().len(),
                if policy.gateways().len() == 1 {
                    ""
                } else {
                    "s"
                },
                policy.resolver(),
                policy.lan(),
                if policy.forward() {
                    ", forwarded traffic covered"
                } else {
                    ", forwarded traffic NOT filtered"
                }
            );
            match rt.block_on(guarded::start(&policy)).map_err(fail)? {
                Some(pid) => println!(
                    "bitmask-root: firewall started through its guard, pid {pid} ({summary})"
                ),
                None => println!("bitmask-root: firewall started ({summary})"),
            }
            Ok(0)
        }
        Command::FirewallBlock(policy) => {
            let rt = runtime()?;
            if inv.dry_run {
                let text = rt.block_on(firewall::dry_run(&policy)).map_err(fail)?;
                print!("{text}");
                if let Some(note) = rt.block_on(guarded::dry_run_note("block")) {
                    eprintln!("bitmask-root: --dry-run: {note}");
                }
                return Ok(0);
            }
            need_root()?;
            let summary = format!(
                "no gateway, DNS to {} through the tunnel only, LAN {}",
                policy.resolver(),
                policy.lan()
            );
            match rt.block_on(guarded::start(&policy)).map_err(fail)? {
                Some(pid) => println!(
                    "bitmask-root: firewall blocking through its guard, pid {pid} ({summary})"
                ),
                None => println!("bitmask-root: firewall blocking ({summary})"),
            }
            Ok(0)
        }
        Command::FirewallGuard(policy) => {
            let rt = runtime()?;
            if inv.dry_run {
                let text = rt.block_on(firewall::dry_run(&policy)).map_err(fail)?;
                print!("{text}");
                let note = rt
                    .block_on(guarded::dry_run_note("guard"))
                    .unwrap_or_else(|| "firewall guard would create this table with the table flags owner and persist and keep it".to_string());
                eprintln!("bitmask-root: --dry-run: {note}");
                return Ok(0);
            }
            need_root()?;
            crate::engine::guard_namespace().map_err(|e| fail(e.into()))?;
            let options = crate::firewall::guard::GuardOptions::from_env().map_err(|v| {
                (
                    2,
                    format!(
                        "{}={v:?} is not a guard mode: use owner or watch (see bitmask-root --help)",
                        crate::firewall::guard::GUARD_MODE_ENV
                    ),
                )
            })?;
            rt.block_on(guarded::run_guard(policy, options))
        }
        Command::FirewallStop => {
            if inv.dry_run {
                println!("delete table inet {}", crate::plan::TABLE);
                if let Some(note) = runtime()?.block_on(guarded::dry_run_note("stop")) {
                    eprintln!("bitmask-root: --dry-run: {note}");
                }
                return Ok(0);
            }
            need_root()?;
            let (guard, was_up) = runtime()?.block_on(guarded::stop()).map_err(fail)?;
            let state = if was_up { "stopped" } else { "was not running" };
            match guard {
                Some(pid) => {
                    println!("bitmask-root: firewall {state}; its guard (pid {pid}) has ended")
                }
                None => println!("bitmask-root: firewall {state}"),
            }
            Ok(0)
        }
        Command::FirewallIsup => {
            need_root()?;
            let rt = runtime()?;
            let status = rt.block_on(firewall::status()).map_err(fail)?;
            // Asked after the status, which holds the command lock: the guard answers
            // without it.
            let held = rt.block_on(guarded::protection());
            let with_guard = |line: String| match &held {
                Some(h) => format!("{line}; {h}"),
                None => line,
            };
            if let firewall::Status::Up(policy) = &status {
                // Up stays up (exit 0); the line says when DNS cannot work, and why.
                let line = match rt.block_on(firewall::dns_warning(policy)) {
                    Ok(None) => status.to_string(),
                    Ok(Some(warning)) => format!("{status}; {warning}"),
                    Err(e) => format!(
                        "{status}; could not read the route to {}: {e}",
                        policy.resolver()
                    ),
                };
                println!("bitmask-root: {}", with_guard(line));
                Ok(0)
            } else {
                Err((1, with_guard(status.to_string())))
            }
        }
        Command::FirewallExplain(x) => {
            let answer = match &x.plan {
                Some((policy, _)) => firewall::explain::explain_plan(policy, &x.question),
                None => {
                    need_root()?;
                    firewall::explain::explain_running(&x.question)
                }
            }
            .map_err(fail)?;
            if x.json {
                print!("{}", answer.to_json().pretty());
            } else {
                let mut text = answer.text.clone();
                if matches!(x.plan, Some((_, true))) {
                    text.push_str(" (Planned without gateways: add --gateway GW to include them.)");
                }
                println!("{text}");
            }
            Ok(if answer.passes { 0 } else { 1 })
        }
        Command::FirewallStatus { json } => {
            need_root()?;
            let mut report = firewall::report::report().map_err(fail)?;
            if report.status != firewall::Status::Down {
                // Who keeps the table: a running guard, or an orphaned/foreign owner.
                report.guard = runtime()?.block_on(guarded::protection());
            }
            if json {
                print!("{}", report.to_json().pretty());
            } else {
                print!("{report}");
            }
            Ok(0)
        }
        Command::EmailStart(word) => {
            // The UID is checked before anything else: a bad one exits 2, nothing changed.
            let uid = crate::email::parse_uid(&word).map_err(|e| fail(e.into()))?;
            if inv.dry_run {
                print!("{}", crate::email::dry_run(uid).map_err(fail)?);
                return Ok(0);
            }
            need_root()?;
            crate::email::start(uid).map_err(fail)?;
            println!(
                "bitmask-root: email firewall started (ports {} and {} reachable through lo by uid {uid} only)",
                crate::email::IMAP_PORT,
                crate::email::SMTP_PORT
            );
            Ok(0)
        }
        Command::EmailStop => {
            if inv.dry_run {
                println!("delete table inet {}", crate::email::TABLE);
                return Ok(0);
            }
            need_root()?;
            let was_up = crate::email::stop().map_err(fail)?;
            println!(
                "bitmask-root: email firewall {}",
                if was_up { "stopped" } else { "was not running" }
            );
            Ok(0)
        }
        Command::EmailIsup => {
            need_root()?;
            let status = crate::email::status().map_err(fail)?;
            if status.is_up() {
                println!("bitmask-root: {status}");
                Ok(0)
            } else {
                Err((1, status.to_string()))
            }
        }
        Command::OpenvpnStart(args) => {
            let env = crate::openvpn::LaunchEnv::detect().map_err(fail_openvpn)?;
            if inv.dry_run {
                let argv = crate::openvpn::validate(&args, &env).map_err(fail_openvpn)?;
                let words: Vec<String> = argv
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                println!("{}", words.join(" "));
                return Ok(0);
            }
            need_root()?;
            crate::engine::guard_namespace().map_err(|e| fail(e.into()))?;
            match crate::openvpn::start(&args, &env) {
                Ok(never) => match never {},
                Err(e) => Err(fail_openvpn(e)),
            }
        }
        Command::OpenvpnStop => {
            need_root()?;
            crate::engine::guard_namespace().map_err(|e| fail(e.into()))?;
            let outcome = crate::openvpn::stop().map_err(fail_openvpn)?;
            let msg = match outcome {
                crate::openvpn::StopOutcome::Stopped { pid } => {
                    format!("openvpn (pid {pid}) stopped")
                }
                crate::openvpn::StopOutcome::Killed { pid } => {
                    format!("openvpn (pid {pid}) ignored SIGTERM and was killed")
                }
                crate::openvpn::StopOutcome::NotRunning => "openvpn was not running".to_string(),
            };
            println!("bitmask-root: {msg}");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }
    fn no_env(_: &str) -> Option<String> {
        None
    }
    fn parse_ok(s: &str) -> Invocation {
        parse(&argv(s), &no_env).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }
    fn policy_of(inv: Invocation) -> Policy {
        match inv.command {
            Command::FirewallStart(p) => p,
            other => panic!("not a start: {other:?}"),
        }
    }

    #[test]
    fn restart_is_never_a_gateway_and_every_gateway_counts() {
        let p = policy_of(parse_ok("firewall start 198.51.100.7"));
        assert_eq!(
            p.gateways().len(),
            1,
            "v19-main dropped the first gateway; we must not"
        );
        let p = policy_of(parse_ok("firewall start restart 198.51.100.7 203.0.113.9"));
        assert_eq!(p.gateways().len(), 2);
        assert!(parse(&argv("firewall start restart"), &no_env).is_err());
        assert!(parse(&argv("firewall start 198.51.100.7 restart"), &no_env).is_err());
    }

    #[test]
    fn resolver_flags_and_environment() {
        let p = policy_of(parse_ok("firewall start 198.51.100.7"));
        assert_eq!(p.resolver(), policy::RESOLVER_UDP);
        let p = policy_of(parse_ok("--tcp firewall start 198.51.100.7"));
        assert_eq!(p.resolver(), policy::RESOLVER_TCP);
        let p = policy_of(parse_ok("--udp --udp firewall start 198.51.100.7"));
        assert_eq!(p.resolver(), policy::RESOLVER_UDP);
        let p = policy_of(parse_ok(
            "--resolver=192.0.2.53 firewall start 198.51.100.7",
        ));
        assert_eq!(p.resolver().to_string(), "192.0.2.53");
        assert!(parse(&argv("--udp --tcp firewall start 198.51.100.7"), &no_env).is_err());
        let env = |k: &str| match k {
            "UDP" => Some("0".to_string()),
            "DEBUG" => Some("0".to_string()),
            _ => None,
        };
        let p = policy_of(parse(&argv("firewall start 198.51.100.7"), &env).unwrap());
        assert_eq!(
            p.resolver(),
            policy::RESOLVER_TCP,
            "released: UDP!=1 means the TCP resolver"
        );
        assert!(
            p.debug(),
            "released: DEBUG set to anything non-empty turns debug on"
        );
        let p = policy_of(parse(&argv("--udp firewall start 198.51.100.7"), &env).unwrap());
        assert_eq!(
            p.resolver(),
            policy::RESOLVER_UDP,
            "a flag wins over the environment"
        );
    }

    #[test]
    fn options_and_modes() {
        let inv =
            parse_ok("--dry-run --lan off --tunnel wg0 --compat --test firewall start 2001:db8::1");
        assert!(inv.dry_run);
        let p = policy_of(inv);
        assert_eq!(p.lan(), LanMode::Off);
        assert_eq!(p.tunnel().to_string(), "wg0");
        assert_eq!(p.profile(), Profile::Compat);
        assert!(p.debug());
    }

    #[test]
    fn forward_switch() {
        assert!(policy_of(parse_ok("firewall start 198.51.100.7")).forward());
        assert!(policy_of(parse_ok("--forward on firewall start 198.51.100.7")).forward());
        assert!(!policy_of(parse_ok("--forward off firewall start 198.51.100.7")).forward());
        assert!(!policy_of(parse_ok("--forward=off firewall start 198.51.100.7")).forward());
        assert!(
            !policy_of(parse_ok("--compat firewall start 198.51.100.7")).forward(),
            "--compat has no forwarding rules"
        );
        for bad in [
            "--forward firewall start 198.51.100.7",
            "--forward yes firewall start 198.51.100.7",
            "--forward",
            "--compat --forward on firewall start 198.51.100.7",
            "firewall start 198.51.100.7 --forward off",
        ] {
            let r = parse(&argv(bad), &no_env);
            assert!(r.is_err(), "{bad:?} must be refused, got {r:?}");
        }
        let h = help();
        assert!(h.contains("--forward on|off") && h.contains("RISK"));
    }

    #[test]
    fn invalid_command_lines_are_usage_errors() {
        for bad in [
            "",
            "firewall",
            "firewall start",
            "firewall start 1",
            "firewall start 127.1",
            "firewall start 999.1.1.1",
            "firewall start example.org",
            "firewall start 198.51.100.7 --udp",
            "--bogus firewall stop",
            "--lan sometimes firewall start 198.51.100.7",
            "--resolver 10.1 firewall start 198.51.100.7",
            "--resolver",
            "--udp=1 firewall stop",
            "firewall stop now",
            "firewall isup 1",
            "firewall restart",
            "version x",
            "reboot",
            "fw-email start",
            "fw-email start 1000 1001",
        ] {
            let r = parse(&argv(bad), &no_env);
            assert!(r.is_err(), "{bad:?} must be refused, got {r:?}");
            let msg = r.unwrap_err().0;
            assert!(msg.contains("bitmask-root --help"), "{bad:?}: {msg}");
        }
        let junk = vec!["firewall".into(), "start".into(), "1.2.3.4 junk".into()];
        assert!(parse(&junk, &no_env).is_err());
        let many: Vec<String> = ["firewall", "start"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..100_000u32).map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()))
            .collect();
        assert!(parse(&many, &no_env).unwrap_err().0.contains("at most"));
    }

    #[test]
    fn guard_takes_the_options_and_gateways_of_start() {
        let inv = parse_ok("--lan off --tcp firewall guard 198.51.100.7 2001:db8::7");
        match inv.command {
            Command::FirewallGuard(p) => {
                assert_eq!(p.gateways().len(), 2);
                assert_eq!(p.lan(), LanMode::Off);
                assert_eq!(p.resolver(), policy::RESOLVER_TCP);
            }
            other => panic!("not a guard: {other:?}"),
        }
        for bad in [
            "firewall guard 127.1",
            "firewall guard 198.51.100.7 --udp",
            "firewall guard restart 198.51.100.7",
            "firewall guard restart",
        ] {
            assert!(parse(&argv(bad), &no_env).is_err(), "{bad:?}");
        }
        assert!(help().contains("firewall guard [GATEWAY...]"));
    }

    #[test]
    fn guard_without_gateways_guards_a_blocking_firewall() {
        let inv = parse_ok("--lan off --forward off firewall guard");
        let Command::FirewallGuard(p) = inv.command else {
            panic!("not a guard: {inv:?}");
        };
        assert_eq!(p.mode(), Mode::Block);
        assert!(p.gateways().is_empty());
        assert_eq!(p.lan(), LanMode::Off);
        assert!(!p.forward());
        let Command::FirewallGuard(p) = parse_ok("firewall guard 198.51.100.7").command else {
            panic!("not a guard");
        };
        assert_eq!(p.mode(), Mode::Connect);
    }

    #[test]
    fn explain_and_status_command_lines() {
        let x = |s: &str| match parse_ok(s).command {
            Command::FirewallExplain(x) => x,
            other => panic!("{s}: {other:?}"),
        };
        let e = x("firewall explain 192.168.2.5:631");
        assert_eq!(e.question.protocol, Protocol::Tcp);
        assert_eq!(e.question.port, Some(631));
        assert!(e.plan.is_none() && !e.json);
        let e = x("firewall explain [2001:db8::1]:53 udp --via eth0 --sport 5353 --json");
        assert_eq!(e.question.protocol, Protocol::Udp);
        assert_eq!(e.question.via.as_deref(), Some("eth0"));
        assert_eq!(e.question.sport, Some(5353));
        assert!(e.json);
        let e = x("firewall explain fe80::1%eth1");
        assert_eq!(e.question.protocol, Protocol::Icmp);
        assert_eq!(e.question.via.as_deref(), Some("eth1"));
        let e = x("firewall explain 203.0.113.10:443 tcp --in=docker0 --src 172.17.0.2");
        assert_eq!(e.question.forwarded_from.as_deref(), Some("docker0"));
        let e = x("--dry-run --lan off firewall explain 10.0.0.1:80 --gateway 198.51.100.7");
        let (p, without) = e.plan.expect("a plan");
        assert!(!without && p.lan() == LanMode::Off);
        let e = x("--dry-run firewall explain 10.0.0.1:80");
        assert!(
            matches!(&e.plan, Some((p, true)) if p.mode() == Mode::Block && p.gateways().is_empty())
        );
        let e = x("--dry-run --compat --lan on-link firewall explain 10.0.0.1:80");
        assert!(
            matches!(&e.plan, Some((p, true)) if p.mode() == Mode::Block && p.lan() == LanMode::OnLink)
        );
        assert_eq!(
            parse_ok("firewall status --json").command,
            Command::FirewallStatus { json: true }
        );
        for bad in [
            "firewall explain",
            "firewall explain --via eth0 10.0.0.1",
            "firewall explain 10.0.0.1:80 tcp udp",
            "firewall explain 010.0.0.1",
            "firewall explain 10.0.0.1:65536",
            "firewall explain 10.0.0.1%eth0",
            "firewall explain 10.0.0.1 --via a/b",
            "firewall explain 10.0.0.1 --via averyveryverylongname",
            "firewall explain 10.0.0.1:53 --in eth0 --src 10.0.0.2 --uid 0",
            "firewall explain 10.0.0.1:53 --gateway 198.51.100.7",
            "firewall status -j",
            "firewall explain fe80::1",
            "firewall explain ff02::fb",
        ] {
            assert!(
                parse(&argv(bad), &no_env).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn help_states_the_gateway_bound() {
        let help = help().split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains(&format!("At most {}", policy::MAX_GATEWAYS)));
    }

    #[test]
    fn block_takes_no_gateway_and_the_global_options() {
        let inv = parse_ok("--lan off --tcp --tunnel wg0 firewall block");
        let Command::FirewallBlock(p) = inv.command else {
            panic!("not a block: {inv:?}");
        };
        assert_eq!(p.mode(), Mode::Block);
        assert!(p.gateways().is_empty());
        assert_eq!(p.lan(), LanMode::Off);
        assert_eq!(p.resolver(), policy::RESOLVER_TCP);
        assert_eq!(p.tunnel().to_string(), "wg0");
        let env = |k: &str| (k == "DEBUG").then(|| "1".to_string());
        let Command::FirewallBlock(p) = parse(&argv("firewall block"), &env).unwrap().command
        else {
            panic!("not a block");
        };
        assert!(p.debug(), "the released switches apply to block too");
        for bad in [
            "firewall block 198.51.100.7",
            "firewall block restart",
            "firewall block --lan off",
            "firewall block x y",
        ] {
            let e = parse(&argv(bad), &no_env).unwrap_err().0;
            assert!(e.contains("bitmask-root --help"), "{bad}: {e}");
        }
        assert!(parse(&argv("firewall block 198.51.100.7"), &no_env)
            .unwrap_err()
            .0
            .contains("use firewall start GATEWAY"));
    }

    #[test]
    fn unknown_commands_list_what_exists() {
        let e = |s: &str| parse(&argv(s), &no_env).unwrap_err().0;
        assert_eq!(
            e("firewall explode"),
            "unknown firewall command \"explode\": use start, block, stop, isup, guard, explain or status (see bitmask-root --help)"
        );
        assert_eq!(
            e("firewall"),
            "firewall needs a command: start, block, stop, isup, guard, explain or status (see bitmask-root --help)"
        );
        assert_eq!(
            e("reboot"),
            "no such command \"reboot\": use firewall, fw-email, openvpn, version or help (see bitmask-root --help)"
        );
        assert_eq!(e(""), "no command given (see bitmask-root --help)");
    }

    #[test]
    fn generate_prints_the_packaged_files() {
        for (word, what) in Generated::ALL {
            assert_eq!(
                parse_ok(&format!("{GENERATE} {word}")).command,
                Command::Generate(what)
            );
            assert!(!what.text().is_empty());
        }
        assert!(parse(&argv("__generate"), &no_env).is_err());
        assert!(parse(&argv("__generate man bash"), &no_env).is_err());
        assert!(!help().contains(GENERATE), "hidden from the help");
    }

    #[test]
    fn help_version_and_others() {
        assert_eq!(parse_ok("help").command, Command::Help);
        assert_eq!(parse_ok("-h").command, Command::Help);
        assert_eq!(parse_ok("--help firewall").command, Command::Help);
        assert_eq!(parse_ok("version").command, Command::Version);
        assert_eq!(parse_ok("firewall stop").command, Command::FirewallStop);
        assert_eq!(parse_ok("firewall isup").command, Command::FirewallIsup);
        assert_eq!(
            parse_ok("fw-email start restart 1000").command,
            Command::EmailStart("1000".into())
        );
        assert_eq!(
            parse_ok("openvpn start /usr/sbin/openvpn --persist-tun").command,
            Command::OpenvpnStart(vec!["/usr/sbin/openvpn".into(), "--persist-tun".into()])
        );
    }
}
