//! The command line: argv → what to do, and the exit code. Compatible with both grammars of
//! bitmask-root 19 (the released one, configured by `UDP`/`DEBUG`/`TEST` in the environment,
//! and the one on main with `--udp`/`--debug`/`--test`).
//!
//! Exit codes: 0 success, 1 failure at run time, 2 usage error. Every failure prints one line
//! on stderr starting with `bitmask-root: `. A refused command changes nothing.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use crate::policy::{self, IfPattern, LanMode, Policy, Profile};

/// The version printed by `bitmask-root version`: the original's protocol version first, so
/// clients that compare it keep working, then ours.
pub const VERSION: &str = concat!("19 (bitmask-root-rs ", env!("CARGO_PKG_VERSION"), ")");

/// The help text.
pub const HELP: &str = "\
bitmask-root: the privileged helper of Bitmask VPN clients (RiseupVPN, CalyxVPN), rebuilt as a
netlink-native kill switch. The firewall is one nftables table (inet bitmask) applied in one
transaction: no process is started, nothing is half-applied.

USAGE:
    bitmask-root [OPTIONS] firewall start [restart] GATEWAY...
    bitmask-root [OPTIONS] firewall stop
    bitmask-root [OPTIONS] firewall isup
    bitmask-root [OPTIONS] fw-email start UID | stop | isup
    bitmask-root [OPTIONS] openvpn start [restart] [OPENVPN_PATH] OPENVPN_OPTIONS...
    bitmask-root openvpn stop
    bitmask-root version | help

FIREWALL:
    start GATEWAY...   Block everything that leaves outside the tunnel (tun* by default)
                       except traffic to the VPN gateways (IPv4 or IPv6 addresses), the local
                       network, DHCP, IPv6 neighbour discovery, SSDP and mDNS. Rewrite all
                       IPv4 DNS (udp and tcp port 53) to the VPN's resolver, and let DNS leave
                       only through the tunnel. On a running firewall, replace it atomically.
                       'restart' is accepted and ignored, for compatibility. At most 16384
                       gateways; IPv4 in dotted-quad form only (not 127.1 or 1).
    stop               Remove the firewall (exit 0 also when it was not running).
    isup               Exit 0 only if the firewall is up, untouched, and planned for the
                       network as it is now; otherwise say why and exit 1.

FW-EMAIL (its own table, inet bitmask_email, independent of the firewall's):
    start UID          Let only user UID (a numeric uid, or a user name from /etc/passwd)
                       reach the local mail proxies, tcp ports 1984 (IMAP) and 2013 (SMTP),
                       through lo, IPv4 and IPv6; refuse every other user (root too, unless
                       UID is 0) and every connection from another interface. On a running
                       email firewall, replace it atomically. A bad UID exits 2.
    stop               Remove it (exit 0 also when it was not running).
    isup               Exit 0 only if it is up and untouched; otherwise say why and exit 1.

OPENVPN:
    start [restart] [OPENVPN_PATH] OPTIONS...
                       Exec openvpn (from a fixed list of root-owned paths) with the original's
                       fixed options first, then the caller's, each on an allow list with typed
                       values: files are checked as the invoking user, the management interface
                       listens on loopback or a unix socket of that user only. An unknown option
                       or a bad value exits 2 and names it. --dry-run prints the argv instead.
    stop               Stop exactly the openvpn that start launched (SIGTERM, SIGKILL after
                       5 s); exit 0 also when it was not running.

OPTIONS (before the command):
    --udp              DNS goes to 10.42.0.1, the resolver of UDP gateways (the default).
    --tcp              DNS goes to 10.41.0.1, the resolver of TCP gateways.
    --resolver ADDR    DNS goes to ADDR (an IPv4 address).
    --lan MODE         private: open the private on-link prefixes (RFC 1918, 169.254/16,
                       fe80::/10, fc00::/7) of non-tunnel interfaces (the default);
                       on-link: every on-link prefix, as the original did;
                       off: no local network (DHCP and neighbour discovery still work).
    --tunnel PATTERN   The tunnel interface: a name (tun0, wg0) or a prefix with * (tun*).
    --debug, --test    Log each packet before it is rejected (prefix \"iptables denied: \").
    --compat           The original's rules, as nftables expresses them. LEAKY (bound to the
                       default device at start, IPv6 rejects only tcp and udp, DNS may leave in
                       clear): for comparison only.
    --dry-run          Print what would be applied, in nft syntax, and change nothing. Needs
                       no root.
    -h, --help         This help.   --version   The version.

ENVIRONMENT (the released bitmask-root's switches, honoured when no option says otherwise):
    UDP=1 selects 10.42.0.1, UDP set to anything else 10.41.0.1; DEBUG or TEST non-empty
    turn on --debug.

EXIT CODES:
    0 success, 1 failure at run time (not root, the kernel refused, no usable route,
    another command held the firewall of this network namespace for 5 s), 2 usage error
    (nothing was changed). Firewall commands run one at a time per network namespace.

EXAMPLES:
    sudo bitmask-root firewall start 198.51.100.7 2001:db8::7
    bitmask-root --dry-run --lan off firewall start 198.51.100.7
    sudo bitmask-root firewall isup || echo \"not protected\"
    sudo bitmask-root fw-email start \"$(id -u)\"
";

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
    /// `firewall stop`.
    FirewallStop,
    /// `firewall isup`.
    FirewallIsup,
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
        match flag {
            "-h" | "--help" => {
                return Ok(Invocation {
                    command: Command::Help,
                    dry_run: false,
                })
            }
            "--version" => {
                return Ok(Invocation {
                    command: Command::Version,
                    dry_run: false,
                })
            }
            "--udp" => set_resolver("--udp", policy::RESOLVER_UDP)?,
            "--tcp" => set_resolver("--tcp", policy::RESOLVER_TCP)?,
            "--resolver" => {
                let v = value("--resolver")?;
                let addr = policy::parse_resolver(&v)?;
                set_resolver("--resolver", addr)?;
            }
            "--debug" | "--test" => g.debug = true,
            "--lan" => g.lan = Some(value("--lan")?.parse()?),
            "--tunnel" => g.tunnel = Some(value("--tunnel")?.parse()?),
            "--compat" => g.compat = true,
            "--dry-run" => g.dry_run = true,
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
        if inline.is_some() && !matches!(flag, "--resolver" | "--lan" | "--tunnel") {
            return Err(usage(format!("option {flag} takes no value")));
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
    let command = match words.as_slice() {
        [] => return Err(usage("no command given")),
        ["help", ..] => Command::Help,
        ["version", extra @ ..] => {
            no_more(extra, "version")?;
            Command::Version
        }
        ["firewall", "start", gws @ ..] => Command::FirewallStart(firewall_policy(gws, &g, env)?),
        ["firewall", "stop", extra @ ..] => {
            no_more(extra, "firewall stop")?;
            Command::FirewallStop
        }
        ["firewall", "isup", extra @ ..] => {
            no_more(extra, "firewall isup")?;
            Command::FirewallIsup
        }
        ["firewall", other, ..] => {
            return Err(usage(format!(
                "unknown firewall command {other:?}: use start, stop or isup"
            )))
        }
        ["firewall"] => return Err(usage("firewall needs a command: start, stop or isup")),
        ["fw-email", "start", rest @ ..] => {
            let rest: Vec<&str> = rest.iter().copied().filter(|w| *w != "restart").collect();
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
        ["fw-email", "stop", extra @ ..] => {
            no_more(extra, "fw-email stop")?;
            Command::EmailStop
        }
        ["fw-email", "isup", extra @ ..] => {
            no_more(extra, "fw-email isup")?;
            Command::EmailIsup
        }
        ["fw-email", ..] => return Err(usage("fw-email needs a command: start UID, stop or isup")),
        ["openvpn", "start", args @ ..] => {
            Command::OpenvpnStart(args.iter().map(|s| s.to_string()).collect())
        }
        ["openvpn", "stop", ..] => Command::OpenvpnStop,
        ["openvpn", ..] => return Err(usage("openvpn needs a command: start ARGS... or stop")),
        [other, ..] => {
            return Err(usage(format!(
                "no such command {other:?}: use firewall, fw-email, openvpn, version or help"
            )))
        }
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
    let mut b = Policy::builder();
    for gw in gws {
        b = b.gateway(policy::parse_gateway(gw)?);
    }
    let resolver = match (&g.resolver, env("UDP")) {
        (Some((_, addr)), _) => *addr,
        (None, Some(v)) if v == "1" => policy::RESOLVER_UDP,
        (None, Some(_)) => policy::RESOLVER_TCP,
        (None, None) => policy::RESOLVER_UDP,
    };
    let env_on = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    b = b
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
    Ok(b.build()?)
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

/// Runs one of the library's futures to completion on this thread. They do their work at
/// once (no I/O in them waits for a wakeup), so the first poll finishes them; should one
/// ever wait, the thread sleeps until it is woken, as any executor's would. No runtime is
/// built: a command needs no async machinery.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Carries out a parsed invocation.
pub fn run(inv: Invocation) -> Outcome {
    use crate::firewall;
    match inv.command {
        Command::Help => {
            print!("{HELP}");
            Ok(0)
        }
        Command::Version => {
            println!("{VERSION}");
            Ok(0)
        }
        Command::FirewallStart(policy) => {
            if inv.dry_run {
                let text = block_on(firewall::dry_run(&policy)).map_err(fail)?;
                print!("{text}");
                return Ok(0);
            }
            need_root()?;
            block_on(firewall::start(&policy)).map_err(fail)?;
            println!(
                "bitmask-root: firewall started ({} gateway{}, DNS to {}, LAN {})",
                policy.gateways().len(),
                if policy.gateways().len() == 1 {
                    ""
                } else {
                    "s"
                },
                policy.resolver(),
                policy.lan()
            );
            Ok(0)
        }
        Command::FirewallStop => {
            if inv.dry_run {
                println!("delete table inet {}", crate::plan::TABLE);
                return Ok(0);
            }
            need_root()?;
            let was_up = firewall::stop().map_err(fail)?;
            println!(
                "bitmask-root: firewall {}",
                if was_up { "stopped" } else { "was not running" }
            );
            Ok(0)
        }
        Command::FirewallIsup => {
            need_root()?;
            let status = block_on(firewall::status()).map_err(fail)?;
            if status.is_up() {
                println!("bitmask-root: {status}");
                Ok(0)
            } else {
                Err((1, status.to_string()))
            }
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
    fn help_states_the_gateway_bound() {
        assert!(HELP.contains(&format!("At most {}", policy::MAX_GATEWAYS)));
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
