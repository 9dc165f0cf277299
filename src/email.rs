//! The email firewall (`fw-email`): only the user who runs Bitmask mail may reach its local
//! IMAP (port 1984) and SMTP (port 2013) proxies, and nobody from outside.
//!
//! It is its own table, `inet bitmask_email`, next to the VPN firewall's `inet bitmask`: the two
//! start, stop and are checked independently, each in one netlink transaction through
//! [`crate::nft::engine`]. IPv4 and IPv6 are covered together.
//!
//! - chain `input`: tcp to 1984 and 2013 is accepted from `lo` and rejected from any other
//!   interface;
//! - chain `output`: tcp to 1984 and 2013 through `lo` is accepted when the socket belongs to
//!   the mail user (`meta skuid UID`) and rejected for everybody else, root included unless
//!   UID is 0.
//!
//! Only the destination port is matched, as in the original: the proxies' own replies (source
//! port 1984 or 2013) leave untouched, whoever owns the listening socket. Other ports are not
//! touched at all.
//!
//! A refused connection gets a TCP reset, so the client sees "connection refused" at once. (The
//! original's ICMP port-unreachable, generated while the local `connect()` still holds its
//! socket, is only noted as a soft error, and the refusal comes a second later, with the
//! retransmitted SYN.)
//!
//! ```
//! use bitmask_root::{email, engine};
//! let uid = email::parse_uid("1000").unwrap();
//! let text = engine::render(&email::plan(uid)).unwrap();
//! assert!(text.contains("oifname \"lo\" meta skuid 1000 tcp dport 1984 accept"));
//! assert!(text.contains("iifname \"lo\" tcp dport 2013 accept"));
//! ```
//!
//! ```no_run
//! use bitmask_root::email;
//! # fn demo() -> Result<(), bitmask_root::Error> {
//! let uid = email::parse_uid("alice")?; // resolved from /etc/passwd, no process started
//! email::start(uid)?;                   // one transaction, read back and verified
//! assert!(email::status()?.is_up());
//! email::stop()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;

use crate::error::Error;
use crate::nft::engine::{self, Applied};
use crate::nft::lock::NamespaceLock;
use crate::nft::readback::{self, KernelTable};
use crate::nft::ruleset::{Action, Chain, ChainKind, Hook, IfPattern, Match, Rule, Ruleset, L4};

/// The name of the email firewall's table (`table inet bitmask_email`).
pub const TABLE: &str = "bitmask_email";
/// The local IMAP proxy's port.
pub const IMAP_PORT: u16 = 1984;
/// The local SMTP proxy's port.
pub const SMTP_PORT: u16 = 2013;
/// The protected ports, in the order of the rules.
pub const PORTS: [u16; 2] = [IMAP_PORT, SMTP_PORT];
/// The first words of the table comment of the email firewall.
pub const RECORD_TAG: &str = "bitmask-root fw-email";
/// The file user names are resolved from.
pub const PASSWD: &str = "/etc/passwd";
/// The largest valid uid (`(uid_t) -1` means "no uid" to the kernel).
pub const MAX_UID: u32 = u32::MAX - 1;
/// The longest user name accepted.
pub const MAX_NAME_LEN: usize = 32;

/// Why a UID word was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum UidError {
    /// The word is empty.
    #[error(
        "no UID given: give the numeric uid or the user name of the mail user; nothing was changed"
    )]
    Empty,
    /// The word is all digits but not a uid.
    #[error("UID {0:?} is out of range: a uid is 0 to {MAX_UID}; nothing was changed")]
    OutOfRange(String),
    /// The word is a number written with leading zeros.
    #[error("UID {0:?} has leading zeros: write the uid without them; nothing was changed")]
    LeadingZeros(String),
    /// The word is neither a number nor a possible user name.
    #[error("UID {0:?} is neither a numeric uid nor a user name (a name starts with a letter or _ and holds only letters, digits, _, - and ., at most {MAX_NAME_LEN}); nothing was changed")]
    Malformed(String),
    /// No such user in the passwd file.
    #[error("no user {name:?} in {PASSWD}: give an existing user name or the numeric uid; nothing was changed")]
    NoSuchUser {
        /// The name.
        name: String,
    },
    /// The user's passwd entry is not `name:password:uid:gid:gecos:home:shell` with a valid uid.
    #[error("the entry of user {name:?} in {PASSWD} (line {line}) is malformed: give the numeric uid instead; nothing was changed")]
    BadEntry {
        /// The name.
        name: String,
        /// The line number, from 1.
        line: usize,
    },
    /// The passwd file could not be read.
    #[error("could not read {PASSWD} to resolve user {name:?} ({source}): give the numeric uid instead; nothing was changed")]
    Passwd {
        /// The name.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl UidError {
    /// The exit code for the command line: 2 for a bad word, 1 when the passwd file could
    /// not be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            UidError::Passwd { .. } => 1,
            _ => 2,
        }
    }
}

/// Parses a UID word: a numeric uid (0 to [`MAX_UID`], no sign, no leading zeros) or a user
/// name, resolved from [`PASSWD`] without running any process. Names served only by other
/// NSS sources (LDAP, sssd, systemd-homed) must be given as numbers.
pub fn parse_uid(word: &str) -> Result<u32, UidError> {
    match classify(word)? {
        Word::Uid(uid) => Ok(uid),
        Word::Name(name) => resolve_in_file(name, Path::new(PASSWD)),
    }
}

/// Parses a UID word, resolving a name in the given passwd text instead of [`PASSWD`]. Pure.
pub fn parse_uid_with(word: &str, passwd: &[u8]) -> Result<u32, UidError> {
    match classify(word)? {
        Word::Uid(uid) => Ok(uid),
        Word::Name(name) => lookup_user(passwd, name),
    }
}

/// What a UID word looks like.
enum Word<'a> {
    Uid(u32),
    Name(&'a str),
}

fn classify(word: &str) -> Result<Word<'_>, UidError> {
    if word.is_empty() {
        return Err(UidError::Empty);
    }
    if word.bytes().all(|b| b.is_ascii_digit()) {
        return parse_numeric(word).map(Word::Uid);
    }
    if is_user_name(word) {
        return Ok(Word::Name(word));
    }
    Err(UidError::Malformed(word.to_string()))
}

/// A decimal uid: digits only, no leading zeros, at most [`MAX_UID`].
fn parse_numeric(digits: &str) -> Result<u32, UidError> {
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(UidError::LeadingZeros(digits.to_string()));
    }
    let out_of_range = || UidError::OutOfRange(digits.to_string());
    if digits.len() > 10 {
        return Err(out_of_range());
    }
    let n: u64 = digits.parse().map_err(|_| out_of_range())?;
    u32::try_from(n)
        .ok()
        .filter(|&u| u <= MAX_UID)
        .ok_or_else(out_of_range)
}

/// Whether `s` is a user name this module resolves: a letter or `_`, then letters, digits,
/// `_`, `-` and `.`, optionally ending in `$` (machine accounts), at most [`MAX_NAME_LEN`].
fn is_user_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut bytes = body.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    s.len() <= MAX_NAME_LEN
        && first_ok
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn resolve_in_file(name: &str, path: &Path) -> Result<u32, UidError> {
    let text = std::fs::read(path).map_err(|source| UidError::Passwd {
        name: name.to_string(),
        source,
    })?;
    lookup_user(&text, name)
}

/// Finds `name` in passwd-format text and returns its uid. The first entry of that name
/// counts, as for `getpwnam`; blank lines and `#` comments are skipped, and other users'
/// entries are not checked. Pure.
pub fn lookup_user(passwd: &[u8], name: &str) -> Result<u32, UidError> {
    for (i, line) in passwd.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if fields.first() != Some(&name.as_bytes()) {
            continue;
        }
        let bad = || UidError::BadEntry {
            name: name.to_string(),
            line: i + 1,
        };
        if fields.len() != 7 {
            return Err(bad());
        }
        let uid_field = std::str::from_utf8(fields[2]).map_err(|_| bad())?;
        if uid_field.is_empty() || !uid_field.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        return parse_numeric(uid_field).map_err(|_| bad());
    }
    Err(UidError::NoSuchUser {
        name: name.to_string(),
    })
}

/// The text stored in the table comment, from which [`status`] rebuilds the plan.
pub fn record(uid: u32) -> String {
    format!("{RECORD_TAG}; uid {uid}")
}

/// Parses a record written by [`record`]; `None` for anything else.
pub fn parse_record(text: &str) -> Option<u32> {
    let digits = text.strip_prefix(RECORD_TAG)?.strip_prefix("; uid ")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_numeric(digits).ok()
}

fn filter_chain(name: &str, hook: Hook, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        hook,
        kind: ChainKind::Filter,
        priority: 0,
        rules,
    }
}

fn input_rules() -> Vec<Rule> {
    let lo = || Match::Iif(IfPattern::exact("lo"));
    let accept = PORTS.map(|p| Rule::new([lo(), Match::Dport(L4::Tcp, p)], Action::Accept));
    let reject = PORTS.map(|p| Rule::new([Match::Dport(L4::Tcp, p)], Action::RejectTcpReset));
    accept.into_iter().chain(reject).collect()
}

fn output_rules(uid: u32) -> Vec<Rule> {
    let lo = || Match::Oif(IfPattern::exact("lo"));
    let accept = PORTS.map(|p| {
        Rule::new(
            [lo(), Match::SkUid(uid), Match::Dport(L4::Tcp, p)],
            Action::Accept,
        )
    });
    let reject = PORTS.map(|p| Rule::new([lo(), Match::Dport(L4::Tcp, p)], Action::RejectTcpReset));
    accept.into_iter().chain(reject).collect()
}

/// Plans the email firewall for the mail user `uid`. Pure: no I/O.
pub fn plan(uid: u32) -> Ruleset {
    Ruleset {
        table: TABLE.into(),
        record: record(uid),
        sets: Vec::new(),
        chains: vec![
            filter_chain("input", Hook::Input, input_rules()),
            filter_chain("output", Hook::Output, output_rules(uid)),
        ],
        set_ip_forward: false,
    }
}

/// The plan in nft syntax, as `nft list table inet bitmask_email` will show it. Changes
/// nothing; needs no root.
pub fn dry_run(uid: u32) -> Result<String, Error> {
    Ok(engine::render(&plan(uid))?)
}

/// Refuses `(uid_t) -1`, which is no uid.
fn check_uid(uid: u32) -> Result<(), UidError> {
    if uid > MAX_UID {
        return Err(UidError::OutOfRange(uid.to_string()));
    }
    Ok(())
}

/// Starts the email firewall for `uid`, or replaces a running one (the new uid takes over at
/// once), in one transaction; then reads it back and verifies it. Holds the namespace's
/// command lock ([`crate::nft::lock`]), as [`stop`] and [`status`] do.
pub fn start(uid: u32) -> Result<Applied, Error> {
    check_uid(uid)?;
    Ok(engine::apply(&plan(uid))?)
}

/// Stops the email firewall. Returns whether it was running; stopping a stopped firewall is
/// fine.
pub fn stop() -> Result<bool, Error> {
    Ok(engine::remove(TABLE)?)
}

/// The state of the email firewall as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Our table is there, untouched, and is exactly the plan for the uid it records.
    Up {
        /// The mail user.
        uid: u32,
    },
    /// Our table is not there.
    Down,
    /// Our table is untouched but was planned differently (by another version of
    /// bitmask-root): start again to apply this version's plan.
    Stale {
        /// The mail user recorded at start.
        uid: u32,
        /// How it differs.
        reason: String,
    },
    /// Our table was changed out of band, or a table of that name is not ours.
    Tampered {
        /// The mail user recorded at start, if the comment could still be read.
        uid: Option<u32>,
        /// What differs.
        reason: String,
    },
}

impl Status {
    /// Whether the email firewall is up and intact.
    pub fn is_up(&self) -> bool {
        matches!(self, Status::Up { .. })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let again = |uid: &Option<u32>| match uid {
            Some(u) => format!("run fw-email start {u} again"),
            None => "run fw-email start UID again".to_string(),
        };
        match self {
            Status::Up { uid } => write!(
                f,
                "email firewall is up (ports {IMAP_PORT} and {SMTP_PORT} for uid {uid} only)"
            ),
            Status::Down => write!(f, "email firewall is down (no table inet {TABLE})"),
            Status::Stale { uid, reason } => write!(
                f,
                "email firewall differs from this version's plan ({reason}); {}",
                again(&Some(*uid))
            ),
            Status::Tampered { uid, reason } => write!(
                f,
                "email firewall was changed by another program ({reason}); {} to restore it",
                again(uid)
            ),
        }
    }
}

/// Reads the email firewall's state in the calling thread's namespace, holding its command
/// lock and reading the table at one generation.
pub fn status() -> Result<Status, Error> {
    let _lock = NamespaceLock::acquire()?;
    match readback::read_table(TABLE)? {
        None => Ok(Status::Down),
        Some(kernel) => judge(&kernel),
    }
}

/// Judges a table read back: up only when its comment is ours and the kernel's fingerprint,
/// the stored one and the one of the plan rebuilt from the record are all the same. Pure apart
/// from encoding.
pub fn judge(kernel: &KernelTable) -> Result<Status, Error> {
    let tampered = |uid, reason: &str| {
        Ok(Status::Tampered {
            uid,
            reason: reason.to_string(),
        })
    };
    let Some(comment) = kernel.comment.as_deref() else {
        return tampered(None, "its comment is missing");
    };
    let parsed = readback::split_comment(comment)
        .and_then(|(record, stored)| Some((parse_record(record)?, stored)));
    let Some((uid, stored)) = parsed else {
        return tampered(None, "its comment is not bitmask-root's fw-email");
    };
    let planned = readback::snapshot_of(&plan(uid))?;
    if kernel.snapshot.fingerprint() != stored {
        return tampered(Some(uid), &kernel.snapshot.describe_difference(&planned));
    }
    if planned.fingerprint() != stored {
        let reason = kernel.snapshot.describe_difference(&planned);
        return Ok(Status::Stale { uid, reason });
    }
    Ok(Status::Up { uid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED_CHAINS: &str = "\
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"lo\" tcp dport 1984 accept
\t\tiifname \"lo\" tcp dport 2013 accept
\t\ttcp dport 1984 reject with tcp reset
\t\ttcp dport 2013 reject with tcp reset
\t}

\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\toifname \"lo\" meta skuid 1000 tcp dport 1984 accept
\t\toifname \"lo\" meta skuid 1000 tcp dport 2013 accept
\t\toifname \"lo\" tcp dport 1984 reject with tcp reset
\t\toifname \"lo\" tcp dport 2013 reject with tcp reset
\t}
}
";

    #[test]
    fn plan_renders_as_nft_lists_it() {
        let rs = plan(1000);
        let text = engine::render(&rs).expect("render");
        let (comment, fp) = engine::comment_of(&rs).expect("comment");
        assert_eq!(
            comment,
            format!("bitmask-root fw-email; uid 1000; rules {fp}")
        );
        let expected =
            format!("table inet bitmask_email {{\n\tcomment \"{comment}\"\n{EXPECTED_CHAINS}");
        assert_eq!(text, expected);
    }

    #[test]
    fn plan_depends_only_on_the_uid() {
        assert_eq!(plan(1000), plan(1000));
        let fp = |u| {
            readback::snapshot_of(&plan(u))
                .expect("snapshot")
                .fingerprint()
        };
        assert_ne!(fp(1000), fp(1001));
        let root = engine::render(&plan(0)).expect("render");
        assert!(root.contains("oifname \"lo\" meta skuid 0 tcp dport 2013 accept"));
    }

    #[test]
    fn record_round_trips() {
        for uid in [0, 1000, 65534, MAX_UID] {
            assert_eq!(parse_record(&record(uid)), Some(uid));
        }
        for bad in [
            "bitmask-root fw-email; uid ",
            "bitmask-root fw-email; uid 1000x",
            "bitmask-root fw-email; uid 01000",
            "bitmask-root fw-email; uid 4294967295",
            "bitmask-root firewall; uid 1000",
            "bitmask-root fw-email",
        ] {
            assert_eq!(parse_record(bad), None, "{bad:?}");
        }
    }

    const PASSWD_TEXT: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
\n\
alice:x:1000:1000:Alice \xe9:/home/alice:/bin/bash\n\
broken:x:12ab:100::/:/bin/false\n\
short:x:1002\n\
huge:x:4294967295:1::/:/bin/false\n\
mach$:x:2000:2000::/:/bin/false\n\
alice:x:1999:1999::/:/bin/false\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\r\n";

    #[test]
    fn numbers_and_names_resolve() {
        let ok = |w: &str| parse_uid_with(w, PASSWD_TEXT).unwrap_or_else(|e| panic!("{w:?}: {e}"));
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("1000"), 1000);
        assert_eq!(ok("4294967294"), MAX_UID);
        assert_eq!(ok("root"), 0);
        assert_eq!(ok("alice"), 1000, "the first entry counts");
        assert_eq!(ok("nobody"), 65534);
        assert_eq!(ok("mach$"), 2000);
        assert_eq!(ok("123456"), 123_456, "a number needs no passwd entry");
    }

    #[test]
    fn anything_else_is_refused() {
        let err = |w: &str| parse_uid_with(w, PASSWD_TEXT).expect_err(w);
        assert!(matches!(err(""), UidError::Empty));
        for w in ["4294967295", "4294967296", "99999999999999999999"] {
            assert!(matches!(err(w), UidError::OutOfRange(_)), "{w}");
        }
        assert!(matches!(err("01000"), UidError::LeadingZeros(_)));
        assert!(matches!(err("00"), UidError::LeadingZeros(_)));
        for w in [
            "1000x",
            "../",
            "..",
            ".",
            "-1",
            "+1000",
            " 1000",
            "1000 ",
            "root:x",
            "al ice",
            "a/b",
            "ünïcode",
            "name\n",
            "1000\0",
            "$",
            "-rf",
            "_$$",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // 33 characters
        ] {
            assert!(matches!(err(w), UidError::Malformed(_)), "{w:?}");
        }
        assert!(matches!(err("mallory"), UidError::NoSuchUser { .. }));
        assert!(
            matches!(err("Root"), UidError::NoSuchUser { .. }),
            "names are case-sensitive"
        );
        assert!(matches!(err("broken"), UidError::BadEntry { line: 5, .. }));
        assert!(matches!(err("short"), UidError::BadEntry { line: 6, .. }));
        assert!(matches!(err("huge"), UidError::BadEntry { line: 7, .. }));
        for w in ["", "1000x", "mallory", "4294967295"] {
            let e = err(w);
            assert_eq!(e.exit_code(), 2);
            assert_eq!(Error::from(e).exit_code(), 2);
        }
    }

    #[test]
    fn an_unreadable_passwd_is_a_runtime_failure() {
        let e = resolve_in_file("alice", Path::new("/nonexistent/passwd")).expect_err("missing");
        assert!(matches!(e, UidError::Passwd { .. }));
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("give the numeric uid instead"));
    }

    #[test]
    fn messages_are_one_line() {
        for w in ["", "1000x", "mallory", "01", "4294967295", "broken"] {
            let msg = parse_uid_with(w, PASSWD_TEXT).expect_err(w).to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.ends_with("nothing was changed"), "{msg}");
        }
    }

    fn kernel_of(rs: &Ruleset, comment: Option<String>) -> KernelTable {
        KernelTable {
            comment,
            snapshot: readback::snapshot_of(rs).expect("snapshot"),
            set_elements: Default::default(),
        }
    }

    #[test]
    fn judge_up_tampered_stale() {
        let rs = plan(1000);
        let (comment, fp) = engine::comment_of(&rs).expect("comment");
        assert_eq!(
            judge(&kernel_of(&rs, Some(comment.clone()))).unwrap(),
            Status::Up { uid: 1000 }
        );

        let mut cut = rs.clone();
        cut.chains[1].rules.pop();
        let s = judge(&kernel_of(&cut, Some(comment.clone()))).unwrap();
        assert!(
            matches!(&s, Status::Tampered { uid: Some(1000), reason } if reason.contains("output")),
            "{s}"
        );
        assert!(s.to_string().contains("fw-email start 1000"));

        // A table applied by another version: untouched, but planned differently.
        let other = readback::comment_for(&record(1000), cut_fp(&cut));
        let s = judge(&kernel_of(&cut, Some(other))).unwrap();
        assert!(matches!(s, Status::Stale { uid: 1000, .. }), "{s}");

        for c in [
            None,
            Some("hello".to_string()),
            Some(format!("bitmask-root firewall; rules {fp}")),
        ] {
            let s = judge(&kernel_of(&rs, c)).unwrap();
            assert!(matches!(s, Status::Tampered { uid: None, .. }), "{s}");
            assert!(!s.is_up());
        }
        assert_eq!(
            Status::Down.to_string(),
            "email firewall is down (no table inet bitmask_email)"
        );
    }

    fn cut_fp(rs: &Ruleset) -> readback::Fingerprint {
        readback::snapshot_of(rs).expect("snapshot").fingerprint()
    }

    #[test]
    fn start_refuses_the_invalid_uid() {
        // Only the check: unit tests run in the machine's namespace and must not apply.
        let e = Error::from(check_uid(u32::MAX).expect_err("u32::MAX is no uid"));
        assert_eq!(e.exit_code(), 2);
        assert!(check_uid(MAX_UID).is_ok() && check_uid(0).is_ok());
    }
}
