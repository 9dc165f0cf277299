//! Turns the caller's words into the argv openvpn will get, or refuses them.
//!
//! Grammar: `[restart] [OPENVPN_PATH] (--FLAG VALUE...)...`. A flag's values are the words
//! up to the next word starting with `--`; their count must match one of the flag's forms in
//! the allow list exactly and each must match its type. Nothing is dropped: any word that
//! does not fit is an error naming the flag and what it accepts.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};

use super::allowlist::{self, FlagSpec, ValueType, FIXED};
use super::binary::{self, Binary, ChooseError};
use super::error::Error;
use super::files::{self, UserCreds};
use super::values;
use super::LaunchEnv;

/// One word of the final argv.
#[derive(Debug)]
pub(crate) enum Item {
    /// A word passed as is.
    Plain(String),
    /// A file checked and opened as the invoking user.
    File {
        /// As given.
        path: String,
        /// The opened file.
        fd: OwnedFd,
    },
    /// A log file to create (at launch) as the invoking user.
    Log {
        /// As given.
        path: String,
    },
    /// A management socket in a directory the user owns.
    Socket {
        /// As given.
        path: String,
        /// The directory.
        dir: OwnedFd,
        /// The socket's name in it.
        name: CString,
    },
}

/// A validated command: the binary and the words after it.
#[derive(Debug)]
pub(crate) struct Validated {
    /// The checked binary.
    pub binary: Binary,
    /// Fixed options, then the caller's.
    pub items: Vec<Item>,
}

impl Validated {
    /// The argv as the caller wrote it (paths as given).
    pub fn display_argv(&self) -> Vec<OsString> {
        let mut v = vec![self.binary.path.clone().into_os_string()];
        v.extend(self.items.iter().map(|i| {
            OsString::from(match i {
                Item::Plain(s) => s.as_str(),
                Item::File { path, .. } | Item::Log { path } | Item::Socket { path, .. } => {
                    path.as_str()
                }
            })
        }));
        v
    }
}

/// Validates `args` (the words after `openvpn start`) for `env`.
pub(crate) fn validate_full(args: &[String], env: &LaunchEnv) -> Result<Validated, Error> {
    let creds = UserCreds::lookup(env.uid);
    let mut rest = args;
    if rest.first().map(String::as_str) == Some("restart") {
        rest = &rest[1..];
    }
    let requested = match rest.first() {
        Some(w) if !w.starts_with("--") => {
            rest = &rest[1..];
            Some(w.as_str())
        }
        _ => None,
    };
    let binary = binary::choose(requested, &env.openvpn_paths).map_err(|e| match e {
        ChooseError::NotAllowed => Error::BinaryNotAllowed {
            given: requested.unwrap_or_default().to_string(),
            allowed: env
                .openvpn_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        },
        ChooseError::Unusable(why) => Error::NoBinary(why),
    })?;

    let mut items: Vec<Item> = FIXED.iter().map(|s| Item::Plain((*s).into())).collect();
    if let Some(g) = &env.group {
        items.push(Item::Plain("--group".into()));
        items.push(Item::Plain(g.clone()));
    }
    if env.ipv6_disabled {
        for what in ["ifconfig-ipv6", "route-ipv6"] {
            for w in ["--pull-filter", "ignore", what] {
                items.push(Item::Plain(w.into()));
            }
        }
    }

    let mut remotes = 0usize;
    let mut management = false;
    let mut i = 0;
    while i < rest.len() {
        let flag = &rest[i];
        if !flag.starts_with("--") {
            return Err(Error::NotAFlag { word: flag.clone() });
        }
        let spec = allowlist::lookup(flag).ok_or_else(|| Error::UnknownFlag {
            flag: flag.clone(),
            allowed: allowlist::allowed_names(),
        })?;
        let n = rest[i + 1..]
            .iter()
            .take_while(|w| !w.starts_with("--"))
            .count();
        let vals = &rest[i + 1..i + 1 + n];
        let checked = check_flag(spec, vals, &creds)?;
        remotes += usize::from(spec.name == "--remote");
        management |= spec.name == "--management";
        items.push(Item::Plain(spec.name.into()));
        items.extend(checked);
        i += 1 + n;
    }
    if remotes == 0 {
        return Err(Error::Missing(
            "at least one `--remote IP PORT PROTO` is required",
        ));
    }
    if !management {
        // The fixed `--management-signal` makes openvpn refuse to start without it.
        return Err(Error::Missing(
            "`--management` is required (LOOPBACK-IP PORT PASSWORD-FILE or SOCKET-PATH unix PASSWORD-FILE)",
        ));
    }
    Ok(Validated { binary, items })
}

fn check_flag(spec: &FlagSpec, vals: &[String], creds: &UserCreds) -> Result<Vec<Item>, Error> {
    let forms: Vec<&[ValueType]> = spec
        .forms
        .iter()
        .copied()
        .filter(|f| f.len() == vals.len())
        .collect();
    if forms.is_empty() {
        return Err(Error::WrongCount {
            flag: spec.name,
            expected: spec.expected_count(),
            got: vals.len(),
        });
    }
    let mut first_err = None;
    for form in forms {
        match check_form(spec, form, vals, creds) {
            Ok(items) => return Ok(items),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(Error::Missing("no form matched")))
}

fn check_form(
    spec: &FlagSpec,
    form: &[ValueType],
    vals: &[String],
    creds: &UserCreds,
) -> Result<Vec<Item>, Error> {
    let mut out = Vec::with_capacity(vals.len());
    for (ty, v) in form.iter().zip(vals) {
        let bad = |reason: String| Error::BadValue {
            flag: spec.name,
            value: v.clone(),
            reason,
            expected: ty.describe(),
        };
        values::check_syntax(*ty, v).map_err(bad)?;
        out.push(match ty {
            ValueType::ReadableFile => Item::File {
                path: v.clone(),
                fd: files::open_readable(creds, v).map_err(bad)?,
            },
            ValueType::LogFile => {
                files::check_log(creds, v).map_err(bad)?;
                Item::Log { path: v.clone() }
            }
            ValueType::SocketPath => {
                let (dir, name) = files::socket_dir(creds, v).map_err(bad)?;
                Item::Socket {
                    path: v.clone(),
                    dir,
                    name,
                }
            }
            _ => Item::Plain(v.clone()),
        });
    }
    Ok(out)
}

/// Arguments ready for `execve`, with the descriptors that must stay open across it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// argv, with every checked file replaced by `/proc/self/fd/N`.
    pub argv: Vec<CString>,
    /// Descriptors referenced by `argv`.
    pub keep: Vec<OwnedFd>,
}

/// Creates the log files (as the invoking user) and builds the argv that refers to the
/// checked files through their descriptors.
pub(crate) fn prepare(v: Validated, env: &LaunchEnv) -> Result<(Binary, Prepared), Error> {
    let creds = UserCreds::lookup(env.uid);
    let nul = |s: String| CString::new(s).map_err(|_| Error::Missing("argument contains NUL"));
    let mut argv = vec![nul(v.binary.path.display().to_string())?];
    let mut keep = Vec::new();
    for item in v.items {
        match item {
            Item::Plain(s) => argv.push(nul(s)?),
            Item::File { fd, .. } => {
                argv.push(nul(format!("/proc/self/fd/{}", fd.as_raw_fd()))?);
                keep.push(fd);
            }
            Item::Log { path } => {
                let fd = files::create_log(&creds, &path).map_err(|reason| Error::BadValue {
                    flag: "--log",
                    value: path.clone(),
                    reason,
                    expected: ValueType::LogFile.describe(),
                })?;
                argv.push(nul(format!("/proc/self/fd/{}", fd.as_raw_fd()))?);
                keep.push(fd);
            }
            Item::Socket { dir, name, .. } => {
                let n = name.to_string_lossy().into_owned();
                argv.push(nul(format!("/proc/self/fd/{}/{n}", dir.as_raw_fd()))?);
                keep.push(dir);
            }
        }
    }
    Ok((v.binary, Prepared { argv, keep }))
}

/// Independent re-check of an argv produced by [`super::validate`], used by the fuzzer and
/// tests: the fixed prefix is intact and every later word is an allowed flag followed by
/// values of the right count and syntax. Returns what is wrong.
pub fn audit_argv(argv: &[OsString]) -> Result<(), String> {
    let words: Vec<&str> = argv
        .iter()
        .map(|w| w.to_str().ok_or("non-UTF-8 word"))
        .collect::<Result<_, _>>()?;
    let rest = words.get(1..).ok_or("empty argv")?;
    if rest.len() < FIXED.len() || rest[..FIXED.len()] != *FIXED {
        return Err("fixed options missing or altered".into());
    }
    let mut i = FIXED.len();
    // --group and the IPv6 pull filters are system-chosen.
    if rest.get(i) == Some(&"--group") {
        match rest.get(i + 1) {
            Some(&"nobody") | Some(&"nogroup") => i += 2,
            other => return Err(format!("bad --group {other:?}")),
        }
    }
    while i < rest.len() {
        let flag = rest[i];
        let spec = allowlist::lookup(flag).ok_or_else(|| format!("flag {flag:?} not allowed"))?;
        let n = rest[i + 1..]
            .iter()
            .take_while(|w| !w.starts_with("--"))
            .count();
        let vals = &rest[i + 1..i + 1 + n];
        let ok = spec.forms.iter().any(|form| {
            form.len() == n
                && form
                    .iter()
                    .zip(vals)
                    .all(|(ty, v)| values::check_syntax(*ty, v).is_ok())
        });
        if !ok {
            return Err(format!("{flag} has bad values {vals:?}"));
        }
        i += 1 + n;
    }
    Ok(())
}
