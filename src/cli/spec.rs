//! The one definition of the command line: every command, option, allowed value, environment
//! switch and exit code, with its help text.
//!
//! Everything users read about the command line is generated from these tables, so none of
//! it can drift from what the parser accepts:
//! - the parser ([`crate::cli::parse`]) finds options with [`option`] and commands with
//!   [`command`], and its "use start, block, stop, isup or guard" hints list the tables;
//! - `--help` ([`super::help::text`]), the man page `bitmask-root(8)` ([`super::man::page`])
//!   and the bash, zsh and fish completions ([`super::complete`]), which the Debian package
//!   ships (`bitmask-root __generate man|bash|zsh|fish` prints them; `cargo xtask package`
//!   calls it).
//!
//! ## Adding an option or a command
//! - **A global option** (given before the command), e.g. `--forward on|off`: add an
//!   [`OptId`] variant and one [`Opt`] to [`OPTIONS`] (its names, the value's name and
//!   allowed words with their help, the help text). The compiler then asks for its arm in
//!   `cli::parse`, where the value becomes part of the policy. Nothing else: help, man page
//!   and completions list it.
//! - **A command**, e.g. `firewall guard GATEWAY...`: add a [`CmdId`] variant and one [`Cmd`]
//!   to [`COMMANDS`] (its words, the synopsis of its arguments, what completes them, its
//!   help). The compiler asks for its arms in `cli::parse` (the arguments) and `cli::run`
//!   (what it does). A new first word also needs a [`Group`] in [`GROUPS`] for its section.
//! - **An option of one command**, e.g. `firewall status --json`: list it in that command's
//!   [`Cmd::options`]; its arm in `cli::parse` reads it from the command's words.
//!
//! Unit tests in [`super::help`] check that every entry is well formed and that the parser
//! accepts exactly what is listed.

/// Which global option an [`Opt`] is; the parser matches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptId {
    /// `--udp`.
    Udp,
    /// `--tcp`.
    Tcp,
    /// `--resolver ADDR`.
    Resolver,
    /// `--lan MODE`.
    Lan,
    /// `--tunnel PATTERN`.
    Tunnel,
    /// `--forward on|off`.
    Forward,
    /// `--debug`, `--test`.
    Debug,
    /// `--compat`.
    Compat,
    /// `--dry-run`.
    DryRun,
    /// `-h`, `--help`.
    Help,
    /// `--version`.
    Version,
    /// An option of one command (see [`Cmd::options`]), never matched as a global option.
    Local,
}

/// One option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    /// What the parser matches on.
    pub id: OptId,
    /// Its names, the main one first (`--debug`, then `--test`).
    pub names: &'static [&'static str],
    /// The value it takes (as the next word, or after `=` for `--long` names), if any.
    pub value: Option<Value>,
    /// What it does: one paragraph.
    pub help: &'static str,
}

/// The value of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Its name in the synopsis (`MODE`).
    pub name: &'static str,
    /// What may be given.
    pub kind: ValueKind,
}

/// What an option value may be; the completions offer the words, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// One of these words.
    OneOf(&'static [Choice]),
    /// An IPv4 address.
    Ipv4,
    /// A network interface name, or a prefix with a trailing `*`.
    Interface,
    /// Free text checked by the parser (an address, a port, a user); nothing is completed.
    Text,
}

/// One allowed word of a [`ValueKind::OneOf`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The word.
    pub word: &'static str,
    /// What it means.
    pub help: &'static str,
}

/// Which command a [`Cmd`] is; the parser and the runner match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdId {
    /// `firewall start [restart] GATEWAY...`.
    FirewallStart,
    /// `firewall block`.
    FirewallBlock,
    /// `firewall stop`.
    FirewallStop,
    /// `firewall isup`.
    FirewallIsup,
    /// `firewall guard [GATEWAY...]`.
    FirewallGuard,
    /// `firewall explain DEST[:PORT] [tcp|udp|icmp] ...`.
    FirewallExplain,
    /// `firewall status [--json]`.
    FirewallStatus,
    /// `fw-email start UID`.
    EmailStart,
    /// `fw-email stop`.
    EmailStop,
    /// `fw-email isup`.
    EmailIsup,
    /// `openvpn start ...`.
    OpenvpnStart,
    /// `openvpn stop`.
    OpenvpnStop,
    /// `version`.
    Version,
    /// `help`.
    Help,
}

/// What the arguments after a command's words are, for the completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// Nothing is completed (none are taken, or addresses).
    Nothing,
    /// A user name (or uid).
    User,
    /// openvpn's options, from the launcher's allow list.
    OpenvpnOptions,
}

/// One command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmd {
    /// What the parser and the runner match on.
    pub id: CmdId,
    /// Its words: a group and a subcommand (`["firewall", "start"]`), or one word.
    pub words: &'static [&'static str],
    /// The synopsis of its arguments (`[restart] GATEWAY...`): upper-case words are
    /// placeholders, `[...]` optional, `...` repeated, other words literal.
    pub args: &'static str,
    /// Whether the global options mean something for it (shown as `[OPTIONS]`).
    pub global_options: bool,
    /// Options that belong to this command and follow its words.
    pub options: &'static [Opt],
    /// What its arguments complete to.
    pub operand: Operand,
    /// What it does: paragraphs separated by `\n`.
    pub help: &'static str,
}

/// A first word that groups commands (`firewall`), or the group of one-word commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The first word, or `""` for the one-word commands.
    pub name: &'static str,
    /// The section title in `--help` and the man page.
    pub title: &'static str,
    /// A note under the title (may be empty).
    pub note: &'static str,
}

/// The program's name.
pub const PROGRAM: &str = "bitmask-root";

/// One line: what the program is (the man page's NAME).
pub const SUMMARY: &str =
    "the privileged helper of Bitmask VPN clients, a netlink-native VPN kill switch";

/// What the program is: `--help` begins with `bitmask-root: ` and this, the man page's
/// description with `bitmask-root is ` and this.
pub const ABOUT: &str = "the privileged helper of Bitmask VPN clients (RiseupVPN, \
CalyxVPN), rebuilt as a netlink-native kill switch. The firewall is one nftables table (inet \
bitmask) applied in one transaction: no process is started, nothing is half-applied.";

/// The command groups, in the order of the sections.
pub const GROUPS: &[Group] = &[
    Group {
        name: "firewall",
        title: "FIREWALL",
        note: "",
    },
    Group {
        name: "fw-email",
        title: "FW-EMAIL",
        note: "Its own table, inet bitmask_email, independent of the firewall's.",
    },
    Group {
        name: "openvpn",
        title: "OPENVPN",
        note: "",
    },
    Group {
        name: "",
        title: "OTHER COMMANDS",
        note: "",
    },
];

/// Every command, in the order of the usage and the sections.
pub const COMMANDS: &[Cmd] = &[
    Cmd {
        id: CmdId::FirewallStart,
        words: &["firewall", "start"],
        args: "[restart] GATEWAY...",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Block everything that leaves outside the tunnel (tun* by default) except traffic \
to the VPN gateways (IPv4 or IPv6 addresses), the local network, DHCP, IPv6 neighbour \
discovery, SSDP and mDNS; the same for traffic forwarded for containers and VMs (see \
--forward). Rewrite all IPv4 DNS (udp and tcp port 53) to the VPN's resolver, and let DNS \
leave only through the tunnel. On a running firewall (or a blocking one), replace \
it atomically. 'restart' is accepted and ignored, for compatibility. At most 16384 gateways; \
IPv4 in dotted-quad form only (not 127.1 or 1).",
    },
    Cmd {
        id: CmdId::FirewallBlock,
        words: &["firewall", "block"],
        args: "",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "The same firewall with no gateway open: nothing leaves outside the tunnel but \
the local network (per --lan), DHCP, IPv6 neighbour discovery, SSDP and mDNS, and DNS leaves \
only through the tunnel. For \"block when disconnected\" and for boot \
(bitmask-root-block.service). Takes no argument. A later firewall start GATEWAY... replaces it \
atomically, with no moment unprotected; stop and isup work on it as on a started firewall.",
    },
    Cmd {
        id: CmdId::FirewallStop,
        words: &["firewall", "stop"],
        args: "",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Remove the firewall (exit 0 also when it was not running).",
    },
    Cmd {
        id: CmdId::FirewallIsup,
        words: &["firewall", "isup"],
        args: "",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Exit 0 only if the firewall is up (started or blocking), untouched, and planned \
for the network as it is now; otherwise say why and exit 1. Says whether a guard keeps it, or \
whether it is orphaned (its guard ended).",
    },
    Cmd {
        id: CmdId::FirewallGuard,
        words: &["firewall", "guard"],
        args: "[GATEWAY...]",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Start the firewall like start (or, without a gateway, like block), then stay in \
the foreground and keep it: the table belongs to this process (nftables table flags owner and \
persist), so other programs cannot change or delete it and flush ruleset skips it; it is \
re-planned when the network changes; one log line per event on stdout. SIGTERM or SIGINT end \
the guard with exit 0 and leave the firewall up (the kernel keeps the table); a new guard \
takes it over, firewall stop removes it (bitmask-root-guard.service runs it).\n\
While a guard runs, firewall start and block hand it the new policy, firewall stop makes it \
remove the table and end, firewall isup names it; a second guard is refused. The guard takes \
the command lock only for each change it makes, so other commands never wait for it longer. \
Without the table flags (Linux before 6.9) it re-applies the table whenever nftables changes \
it instead; BITMASK_ROOT_GUARD_MODE=watch asks for that mode (for tests; honoured only for \
root not run through sudo or pkexec).",
    },
    Cmd {
        id: CmdId::FirewallExplain,
        words: &["firewall", "explain"],
        args: "DEST[:PORT] [tcp|udp|icmp]",
        global_options: true,
        options: EXPLAIN_OPTIONS,
        operand: Operand::Nothing,
        help: "Say what the firewall does with one packet to DEST (IPv4, IPv6, or [IPv6]:PORT) \
and why, naming the rule that decides: the running firewall, or with --dry-run the plan for \
the options given (no root needed). The packet is routed as the kernel routes it now. Default \
protocol: tcp with a port, icmp (echo) without. Exit 0 when it would pass, 1 when not.",
    },
    Cmd {
        id: CmdId::FirewallStatus,
        words: &["firewall", "status"],
        args: "",
        global_options: false,
        options: &[Opt {
            id: OptId::Local,
            names: &["--json"],
            value: None,
            help: "The status as JSON (schema bitmask-root/status, version 1; see the README).",
        }],
        operand: Operand::Nothing,
        help: "The running firewall in words (or JSON for clients): its state, gateways, where \
the resolver is routed, the local networks open per interface, forwarding, and how many \
packets it refused since start, by kind. Exit 0 whenever it could be read (the state is in \
the output).",
    },
    Cmd {
        id: CmdId::EmailStart,
        words: &["fw-email", "start"],
        args: "[restart] UID",
        global_options: true,
        options: &[],
        operand: Operand::User,
        help: "Let only user UID (a numeric uid, or a user name from /etc/passwd) reach the \
local mail proxies, tcp ports 1984 (IMAP) and 2013 (SMTP), through lo, IPv4 and IPv6; refuse \
every other user (root too, unless UID is 0) and every connection from another interface. On \
a running email firewall, replace it atomically. A bad UID exits 2.",
    },
    Cmd {
        id: CmdId::EmailStop,
        words: &["fw-email", "stop"],
        args: "",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Remove it (exit 0 also when it was not running).",
    },
    Cmd {
        id: CmdId::EmailIsup,
        words: &["fw-email", "isup"],
        args: "",
        global_options: true,
        options: &[],
        operand: Operand::Nothing,
        help: "Exit 0 only if it is up and untouched; otherwise say why and exit 1.",
    },
    Cmd {
        id: CmdId::OpenvpnStart,
        words: &["openvpn", "start"],
        args: "[restart] [OPENVPN_PATH] OPENVPN_OPTIONS...",
        global_options: true,
        options: &[],
        operand: Operand::OpenvpnOptions,
        help: "Exec openvpn (from a fixed list of root-owned paths) with the original's fixed \
options first, then the caller's, each on an allow list with typed values: files are checked \
as the invoking user, the management interface listens on loopback or a unix socket of that \
user only. An unknown option or a bad value exits 2 and names it. --dry-run prints the argv \
instead.",
    },
    Cmd {
        id: CmdId::OpenvpnStop,
        words: &["openvpn", "stop"],
        args: "",
        global_options: false,
        options: &[],
        operand: Operand::Nothing,
        help: "Stop exactly the openvpn that start launched (SIGTERM, then SIGKILL after 5 seconds); exit \
0 also when it was not running.",
    },
    Cmd {
        id: CmdId::Version,
        words: &["version"],
        args: "",
        global_options: false,
        options: &[],
        operand: Operand::Nothing,
        help: "Print the version: the original's protocol version (19), then this program's.",
    },
    Cmd {
        id: CmdId::Help,
        words: &["help"],
        args: "",
        global_options: false,
        options: &[],
        operand: Operand::Nothing,
        help: "Print this help.",
    },
];

/// The options of `firewall explain`, after DEST.
pub const EXPLAIN_OPTIONS: &[Opt] = &[
    Opt {
        id: OptId::Local,
        names: &["--via"],
        value: Some(Value {
            name: "IFACE",
            kind: ValueKind::Interface,
        }),
        help: "Sent from a socket bound to IFACE.",
    },
    Opt {
        id: OptId::Local,
        names: &["--in"],
        value: Some(Value {
            name: "IFACE",
            kind: ValueKind::Interface,
        }),
        help: "Forwarded: it comes in by IFACE (needs --src).",
    },
    Opt {
        id: OptId::Local,
        names: &["--src"],
        value: Some(Value {
            name: "ADDR",
            kind: ValueKind::Text,
        }),
        help: "Its source address.",
    },
    Opt {
        id: OptId::Local,
        names: &["--sport"],
        value: Some(Value {
            name: "PORT",
            kind: ValueKind::Text,
        }),
        help: "Its source port.",
    },
    Opt {
        id: OptId::Local,
        names: &["--uid"],
        value: Some(Value {
            name: "UID",
            kind: ValueKind::Text,
        }),
        help: "The sending socket's owner.",
    },
    Opt {
        id: OptId::Local,
        names: &["--gateway"],
        value: Some(Value {
            name: "GW",
            kind: ValueKind::Text,
        }),
        help: "With --dry-run: plan with this gateway (repeat it); without, plan what \
firewall block applies (no gateway open).",
    },
    Opt {
        id: OptId::Local,
        names: &["--json"],
        value: None,
        help: "The answer as JSON (schema bitmask-root/explain, version 1; see the README).",
    },
];

/// The values of `--forward`.
pub const FORWARD_MODES: &[Choice] = &[
    Choice {
        word: "on",
        help: "traffic this host forwards (containers, VMs, a shared connection) is judged \
like its own: out through the tunnel, to the local network per --lan, nothing else; its DNS \
is rewritten to the VPN's resolver (the default);",
    },
    Choice {
        word: "off",
        help: "forwarded traffic is not filtered (but for DNS, which still leaves only \
through the tunnel), for hosts that route a LAN on purpose. RISK: everything else a \
container, VM or hotspot client sends then leaves in clear whenever the tunnel is down. \
Neither value changes ip_forward.",
    },
];

/// The `--lan` modes.
pub const LAN_MODES: &[Choice] = &[
    Choice {
        word: "private",
        help: "open the private on-link prefixes (RFC 1918, 169.254/16, fe80::/10, fc00::/7) \
of non-tunnel interfaces (the default);",
    },
    Choice {
        word: "on-link",
        help: "every on-link prefix, as the original did;",
    },
    Choice {
        word: "off",
        help: "no local network (DHCP and neighbour discovery still work).",
    },
];

/// The global options, given before the command, in the order of the help.
pub const OPTIONS: &[Opt] = &[
    Opt {
        id: OptId::Udp,
        names: &["--udp"],
        value: None,
        help: "DNS goes to 10.42.0.1, the resolver of UDP gateways (the default).",
    },
    Opt {
        id: OptId::Tcp,
        names: &["--tcp"],
        value: None,
        help: "DNS goes to 10.41.0.1, the resolver of TCP gateways.",
    },
    Opt {
        id: OptId::Resolver,
        names: &["--resolver"],
        value: Some(Value {
            name: "ADDR",
            kind: ValueKind::Ipv4,
        }),
        help: "DNS goes to ADDR (an IPv4 address).",
    },
    Opt {
        id: OptId::Lan,
        names: &["--lan"],
        value: Some(Value {
            name: "MODE",
            kind: ValueKind::OneOf(LAN_MODES),
        }),
        help: "Which local network stays open:",
    },
    Opt {
        id: OptId::Tunnel,
        names: &["--tunnel"],
        value: Some(Value {
            name: "PATTERN",
            kind: ValueKind::Interface,
        }),
        help: "The tunnel interface: a name (tun0, wg0) or a prefix with * (tun*).",
    },
    Opt {
        id: OptId::Forward,
        names: &["--forward"],
        value: Some(Value {
            name: "on|off",
            kind: ValueKind::OneOf(FORWARD_MODES),
        }),
        help: "Whether forwarded traffic is covered too:",
    },
    Opt {
        id: OptId::Debug,
        names: &["--debug", "--test"],
        value: None,
        help: "Log each packet before it is rejected (prefix \"iptables denied: \").",
    },
    Opt {
        id: OptId::Compat,
        names: &["--compat"],
        value: None,
        help: "The original's rules, as nftables expresses them. LEAKY (bound to the default \
device at start, IPv6 rejects only tcp and udp, DNS may leave in clear, forwarded traffic not \
filtered): for comparison only.",
    },
    Opt {
        id: OptId::DryRun,
        names: &["--dry-run"],
        value: None,
        help: "Print what would be applied, in nft syntax, and change nothing. Needs no root.",
    },
    Opt {
        id: OptId::Help,
        names: &["-h", "--help"],
        value: None,
        help: "Print this help.",
    },
    Opt {
        id: OptId::Version,
        names: &["--version"],
        value: None,
        help: "Print the version.",
    },
];

/// One environment variable read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// The note above the environment variables.
pub const ENVIRONMENT_NOTE: &str = "The released bitmask-root's switches, honoured when no \
option says otherwise.";

/// The environment variables read.
pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: "UDP",
        help: "1 selects 10.42.0.1 (like --udp); set to anything else, 10.41.0.1 (like --tcp).",
    },
    EnvVar {
        name: "DEBUG",
        help: "Set to anything non-empty, turns on --debug.",
    },
    EnvVar {
        name: "TEST",
        help: "Set to anything non-empty, turns on --debug.",
    },
];

/// The exit codes.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (
        1,
        "failure at run time (not root, the kernel refused, no usable route, another command \
held the firewall of this network namespace for 5 s); firewall commands run one at a time \
per network namespace",
    ),
    (2, "usage error (nothing was changed)"),
];

/// Examples: a command line and what it does.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "sudo bitmask-root firewall start 198.51.100.7 2001:db8::7",
        "Start the kill switch for two gateways.",
    ),
    (
        "sudo bitmask-root firewall block",
        "Block everything outside the tunnel, with no gateway open.",
    ),
    (
        "bitmask-root --dry-run --lan off firewall start 198.51.100.7",
        "Print the rules, with no local network, and change nothing.",
    ),
    (
        "sudo bitmask-root --forward off firewall start 198.51.100.7",
        "Leave forwarded traffic unfiltered (see the risk under --forward).",
    ),
    (
        "sudo bitmask-root firewall isup || echo \"not protected\"",
        "Check that the firewall is up and intact.",
    ),
    (
        "sudo bitmask-root firewall guard 198.51.100.7",
        "Start the kill switch and keep it in the foreground (a systemd unit, or a client that \
keeps its pkexec call open).",
    ),
    (
        "sudo bitmask-root firewall explain 192.168.2.5:631",
        "Say what happens to a connection to a printer, and which rule decides.",
    ),
    (
        "bitmask-root --dry-run --lan off firewall explain 192.168.1.20:445 --via eth0",
        "The same question for a plan, without root.",
    ),
    (
        "sudo bitmask-root firewall status --json",
        "The running firewall for a client: state, resolver route, LAN, refused packets.",
    ),
    (
        "sudo bitmask-root fw-email start \"$(id -u)\"",
        "Let only the calling user reach the mail proxies.",
    ),
];

/// Files the program or its package use (the man page's FILES).
pub const FILES: &[(&str, &str)] = &[
    (
        "/usr/sbin/bitmask-root",
        "The program. Clients run it through pkexec.",
    ),
    (
        "/usr/share/polkit-1/actions/se.leap.bitmask-root.policy",
        "The polkit action for pkexec: active local sessions authenticate as an administrator \
(kept for a while), inactive and remote sessions are refused.",
    ),
    (
        "/usr/lib/systemd/system/bitmask-root-block.service",
        "Applies firewall block early at boot, before the network is up. Installed, not enabled: \
systemctl enable bitmask-root-block.service.",
    ),
    (
        "/usr/lib/systemd/system/bitmask-root-guard.service",
        "Runs firewall guard with the gateways and options of /etc/bitmask-root/guard.env \
(GATEWAYS=..., OPTIONS=...; no gateway guards a blocking firewall). Installed, not enabled.",
    ),
    (
        "/run/bitmask-root/",
        "Run-time state: the pid file of the openvpn that openvpn start launched; lock/, the \
command locks (one per network namespace); guard/, a running guard's control socket and lock \
(net-DEV-INO.sock, net-DEV-INO.lock; root only).",
    ),
];

/// Related manual pages.
pub const SEE_ALSO: &[&str] = &[
    "pkexec(1)",
    "polkit(8)",
    "nft(8)",
    "openvpn(8)",
    "systemctl(1)",
];

/// The global option called `name` (`--lan`, `-h`), if any.
pub fn option(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.names.contains(&name))
}

/// The commands of a group (`""`: the one-word commands).
pub fn group_commands(group: &str) -> impl Iterator<Item = &'static Cmd> + '_ {
    COMMANDS.iter().filter(move |c| match c.words {
        [g, _] => *g == group,
        _ => group.is_empty(),
    })
}

/// The first words, in order: the groups' names and the one-word commands.
pub fn first_words() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = Vec::new();
    for c in COMMANDS {
        if let Some(w) = c.words.first() {
            if !words.contains(w) {
                words.push(w);
            }
        }
    }
    words
}

/// "a, b or c".
pub fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Why the command words did not name a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// No word at all.
    Empty,
    /// The first word is no command or group.
    NoSuchCommand(String),
    /// A group word alone.
    NeedsSubcommand(&'static str),
    /// A group word and a word that is none of its commands.
    NoSuchSubcommand(&'static str, String),
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subs = |g: &str| or_list(&group_commands(g).map(|c| c.words[1]).collect::<Vec<_>>());
        match self {
            Unknown::Empty => write!(f, "no command given"),
            Unknown::NoSuchCommand(w) => {
                write!(f, "no such command {w:?}: use {}", or_list(&first_words()))
            }
            Unknown::NeedsSubcommand(g) => write!(f, "{g} needs a command: {}", subs(g)),
            Unknown::NoSuchSubcommand(g, w) => {
                write!(f, "unknown {g} command {w:?}: use {}", subs(g))
            }
        }
    }
}

/// Finds the command that `words` start with; returns it and the words after its own.
pub fn command<'a>(words: &'a [&'a str]) -> Result<(&'static Cmd, &'a [&'a str]), Unknown> {
    let first = *words.first().ok_or(Unknown::Empty)?;
    if let Some(c) = COMMANDS.iter().find(|c| c.words == [first]) {
        return Ok((c, &words[1..]));
    }
    let Some(group) = GROUPS
        .iter()
        .find(|g| !g.name.is_empty() && g.name == first)
    else {
        return Err(Unknown::NoSuchCommand(first.to_string()));
    };
    let Some(sub) = words.get(1) else {
        return Err(Unknown::NeedsSubcommand(group.name));
    };
    group_commands(group.name)
        .find(|c| c.words[1] == *sub)
        .map(|c| (c, &words[2..]))
        .ok_or_else(|| Unknown::NoSuchSubcommand(group.name, sub.to_string()))
}
