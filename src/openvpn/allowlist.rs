//! The allow list: every openvpn option a caller may pass, with the exact shape of its
//! values. Anything not in [`ALLOWED`] is refused.

/// The type of one value position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// An IPv4 or IPv6 literal in its strict textual form (no `inet_aton` shorthands, no
    /// trailing text, no zone index).
    Ip,
    /// A strict dotted-quad IPv4 address.
    Ipv4,
    /// The host netmask `255.255.255.255` (routes added by users are host routes only).
    HostMask,
    /// A loopback address (`127.0.0.0/8` or `::1`): where the management interface listens.
    LoopbackIp,
    /// A TCP/UDP port, ASCII digits, 1–65535.
    Port,
    /// An unprivileged port, ASCII digits, 1024–65535 (a user may not make root bind a
    /// privileged port).
    UnprivilegedPort,
    /// ASCII digits within the inclusive range.
    Number {
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// `tcp`, `udp`, `tcp4`, `udp4`, `tcp6` or `udp6`.
    Proto,
    /// One cipher or digest name: `[A-Za-z0-9_-]`, starting with a letter or digit, at most
    /// 64 bytes, not `none`.
    Cipher,
    /// A colon-separated list of cipher names (at most 512 bytes).
    CipherList,
    /// A user name for `--management-client-user`: `[a-zA-Z0-9_.@][a-zA-Z0-9_.@-]*$?`.
    User,
    /// An absolute path to a regular file that the invoking user can read (checked with that
    /// user's credentials, symlinks in the last component refused).
    ReadableFile,
    /// An absolute path where the log file is created by us, as the invoking user, without
    /// following a symlink; an existing file must be a regular file that user owns.
    LogFile,
    /// An absolute path for a management unix socket that does not exist yet, inside a
    /// directory the invoking user owns.
    SocketPath,
    /// One of these exact words.
    Literal(&'static [&'static str]),
}

impl ValueType {
    /// Short human description, used in error messages and the README table.
    pub fn describe(&self) -> String {
        let s = match self {
            ValueType::Ip => "an IPv4 or IPv6 address literal",
            ValueType::Ipv4 => "a dotted-quad IPv4 address",
            ValueType::HostMask => "the host netmask 255.255.255.255",
            ValueType::LoopbackIp => "a loopback address (127.0.0.0/8 or ::1)",
            ValueType::Port => "a port number 1-65535",
            ValueType::UnprivilegedPort => "a port number 1024-65535",
            ValueType::Number { min, max } => return format!("a decimal number {min}-{max}"),
            ValueType::Proto => "one of tcp, udp, tcp4, udp4, tcp6, udp6",
            ValueType::Cipher => "a cipher or digest name ([A-Za-z0-9_-], not `none`)",
            ValueType::CipherList => "colon-separated cipher names ([A-Za-z0-9_-:], not `none`)",
            ValueType::User => "a user name",
            ValueType::ReadableFile => {
                "an absolute path to a regular file the invoking user can read (no symlink)"
            }
            ValueType::LogFile => {
                "an absolute path in a directory the invoking user can write; an existing file must be theirs (no symlink)"
            }
            ValueType::SocketPath => {
                "an absolute path, not yet existing, inside a directory the invoking user owns"
            }
            ValueType::Literal(w) => return w.join("|"),
        };
        s.to_string()
    }
}

/// One allowed option.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    /// The option, with its leading `--`.
    pub name: &'static str,
    /// The accepted shapes of its values: the value count must equal one form's length, and
    /// every value must match its position's type (forms of equal length are tried in order).
    pub forms: &'static [&'static [ValueType]],
    /// The values as shown to humans, e.g. `IP PORT PROTO`.
    pub usage: &'static str,
}

use ValueType as T;

const FILE: &[&[T]] = &[&[T::ReadableFile]];
const NONE: &[&[T]] = &[&[]];
const BUF: &[&[T]] = &[&[T::Number {
    min: 0,
    max: 64 * 1024 * 1024,
}]];

/// The allow list, in the order it is documented.
pub const ALLOWED: &[FlagSpec] = &[
    FlagSpec {
        name: "--remote",
        forms: &[&[T::Ip, T::Port, T::Proto]],
        usage: "IP PORT PROTO",
    },
    FlagSpec {
        name: "--ca",
        forms: FILE,
        usage: "FILE",
    },
    FlagSpec {
        name: "--cert",
        forms: FILE,
        usage: "FILE",
    },
    FlagSpec {
        name: "--key",
        forms: FILE,
        usage: "FILE",
    },
    FlagSpec {
        name: "--tls-cipher",
        forms: &[&[T::CipherList]],
        usage: "CIPHER[:CIPHER...]",
    },
    FlagSpec {
        name: "--cipher",
        forms: &[&[T::Cipher]],
        usage: "CIPHER",
    },
    FlagSpec {
        name: "--data-ciphers",
        forms: &[&[T::CipherList]],
        usage: "CIPHER[:CIPHER...]",
    },
    FlagSpec {
        name: "--data-ciphers-fallback",
        forms: &[&[T::Cipher]],
        usage: "CIPHER",
    },
    FlagSpec {
        name: "--auth",
        forms: &[&[T::Cipher]],
        usage: "DIGEST",
    },
    FlagSpec {
        name: "--tls-version-min",
        forms: &[
            &[T::Literal(&["1.2", "1.3"])],
            &[T::Literal(&["1.2", "1.3"]), T::Literal(&["or-highest"])],
        ],
        usage: "1.2|1.3 [or-highest]",
    },
    FlagSpec {
        name: "--management",
        forms: &[
            &[T::LoopbackIp, T::UnprivilegedPort, T::ReadableFile],
            &[T::SocketPath, T::Literal(&["unix"]), T::ReadableFile],
        ],
        usage: "LOOPBACK-IP PORT PASSWORD-FILE | SOCKET-PATH unix PASSWORD-FILE",
    },
    FlagSpec {
        name: "--management-client",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--management-client-user",
        forms: &[&[T::User]],
        usage: "USER",
    },
    FlagSpec {
        name: "--route",
        forms: &[&[T::Ipv4, T::HostMask, T::Literal(&["net_gateway"])]],
        usage: "IPV4 255.255.255.255 net_gateway",
    },
    FlagSpec {
        name: "--pull-filter",
        forms: &[&[
            T::Literal(&["ignore"]),
            T::Literal(&["route", "route-ipv6", "ifconfig-ipv6"]),
        ]],
        usage: "ignore route|route-ipv6|ifconfig-ipv6",
    },
    FlagSpec {
        name: "--socks-proxy",
        forms: &[&[T::Ip, T::Port]],
        usage: "IP PORT",
    },
    FlagSpec {
        name: "--keepalive",
        forms: &[&[
            T::Number { min: 0, max: 86400 },
            T::Number { min: 0, max: 86400 },
        ]],
        usage: "0-86400 0-86400",
    },
    FlagSpec {
        name: "--verb",
        forms: &[&[T::Number { min: 0, max: 11 }]],
        usage: "0-11",
    },
    FlagSpec {
        name: "--fragment",
        forms: &[&[T::Number { min: 0, max: 65535 }]],
        usage: "0-65535",
    },
    FlagSpec {
        name: "--rcvbuf",
        forms: BUF,
        usage: "0-67108864",
    },
    FlagSpec {
        name: "--sndbuf",
        forms: BUF,
        usage: "0-67108864",
    },
    FlagSpec {
        name: "--key-direction",
        forms: &[&[T::Literal(&["0", "1"])]],
        usage: "0|1",
    },
    FlagSpec {
        name: "--log",
        forms: &[&[T::LogFile]],
        usage: "FILE",
    },
    FlagSpec {
        name: "--persist-tun",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--persist-key",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--float",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--tun-ipv6",
        forms: NONE,
        usage: "",
    },
    // Repeats of fixed options, with the fixed value only (providers send them; repeating
    // them changes nothing).
    FlagSpec {
        name: "--dev",
        forms: &[&[T::Literal(&["tun"])]],
        usage: "tun",
    },
    FlagSpec {
        name: "--nobind",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--client",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--tls-client",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--auth-nocache",
        forms: NONE,
        usage: "",
    },
    FlagSpec {
        name: "--remote-cert-tls",
        forms: &[&[T::Literal(&["server"])]],
        usage: "server",
    },
];

/// Looks up an option by its exact name (with the leading `--`).
pub fn lookup(flag: &str) -> Option<&'static FlagSpec> {
    ALLOWED.iter().find(|s| s.name == flag)
}

/// All allowed option names, comma separated (for error messages).
pub fn allowed_names() -> String {
    ALLOWED
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FlagSpec {
    /// Human description of the accepted value counts, e.g. `3 values (IP PORT PROTO)`.
    pub fn expected_count(&self) -> String {
        let mut counts: Vec<usize> = self.forms.iter().map(|f| f.len()).collect();
        counts.dedup();
        let counts: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
        if self.usage.is_empty() {
            "no values".to_string()
        } else {
            format!("{} value(s) ({})", counts.join(" or "), self.usage)
        }
    }
}

/// The options bitmask-root always puts first, before the caller's (the original's list).
/// `--group` and the IPv6 pull filters are added depending on the system.
pub const FIXED: &[&str] = &[
    "--setenv",
    "LEAPOPENVPN",
    "1",
    "--nobind",
    "--client",
    "--dev",
    "tun",
    "--tls-client",
    "--remote-cert-tls",
    "server",
    "--management-signal",
    "--script-security",
    "1",
    "--user",
    "nobody",
    "--auth-nocache",
    "--tls-version-min",
    "1.2",
];

/// The marker in openvpn's command line that `stop` looks for (with the pid file).
pub const MARKER: [&str; 3] = ["--setenv", "LEAPOPENVPN", "1"];
