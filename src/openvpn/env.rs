//! What the launcher needs to know about the system and the caller.

use std::path::PathBuf;

use super::binary;
use super::error::Error;
use super::pidfile;
use crate::sys::openvpn as sys;

/// The facts `validate`/`start` depend on, gathered once by [`LaunchEnv::detect`]. Tests and
/// the fuzzer build their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// The uid of the user on whose behalf we run: `PKEXEC_UID`, else `SUDO_UID`, else the
    /// real uid. Files named in the arguments are checked with this user's rights.
    pub uid: u32,
    /// True if IPv6 is disabled (`net.ipv6.conf.all.disable_ipv6 = 1`, or no IPv6 at all, as
    /// with `ipv6.disable=1`): the IPv6 pull filters are then added.
    pub ipv6_disabled: bool,
    /// The group for openvpn's `--group`: `nobody` if it exists, else `nogroup`, else none.
    pub group: Option<String>,
    /// The allowed openvpn binaries, in order. [`LaunchEnv::detect`] always uses the
    /// compiled-in list (`binary::OPENVPN_PATHS`); no environment variable can change it.
    pub openvpn_paths: Vec<PathBuf>,
    /// Directory of the pid file: `/run/bitmask-root`, or `BITMASK_ROOT_RUN_DIR` when
    /// honoured (see [`pidfile::run_dir`]).
    pub run_dir: PathBuf,
}

impl LaunchEnv {
    /// Reads the environment and the system. Fails only if the environment names the
    /// invoking user inconsistently (e.g. `PKEXEC_UID` and `SUDO_UID` disagree, or one is not
    /// a number): guessing would risk checking files with the wrong user's rights.
    pub fn detect() -> Result<Self, Error> {
        let uid = invoking_uid(
            std::env::var_os("PKEXEC_UID").as_deref(),
            std::env::var_os("SUDO_UID").as_deref(),
            sys::real_uid(),
        )?;
        let group = ["nobody", "nogroup"]
            .into_iter()
            .find(|g| sys::group_exists(g))
            .map(String::from);
        Ok(LaunchEnv {
            uid,
            ipv6_disabled: ipv6_disabled(),
            group,
            openvpn_paths: binary::default_paths(),
            run_dir: pidfile::run_dir(uid),
        })
    }
}

fn parse_uid(name: &str, v: &std::ffi::OsStr) -> Result<u32, Error> {
    let s = v.to_str().unwrap_or("");
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Environment(format!("{name} is not a uid: {v:?}")));
    }
    match s.parse::<u32>() {
        Ok(u) if u != u32::MAX => Ok(u),
        _ => Err(Error::Environment(format!("{name} is not a uid: {v:?}"))),
    }
}

/// `PKEXEC_UID`, else `SUDO_UID`, else `real`. If both variables are set they must agree:
/// sudo always sets `SUDO_UID` itself, so a `PKEXEC_UID` that disagrees with it was forged by
/// the caller (possible where sudo keeps the environment).
pub(crate) fn invoking_uid(
    pkexec: Option<&std::ffi::OsStr>,
    sudo: Option<&std::ffi::OsStr>,
    real: u32,
) -> Result<u32, Error> {
    let p = pkexec.map(|v| parse_uid("PKEXEC_UID", v)).transpose()?;
    let s = sudo.map(|v| parse_uid("SUDO_UID", v)).transpose()?;
    match (p, s) {
        (Some(p), Some(s)) if p != s => Err(Error::Environment(format!(
            "PKEXEC_UID ({p}) and SUDO_UID ({s}) disagree"
        ))),
        (Some(p), _) => Ok(p),
        (None, Some(s)) => Ok(s),
        (None, None) => Ok(real),
    }
}

fn ipv6_disabled() -> bool {
    match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        Ok(s) => s.trim() == "1",
        // No IPv6 sysctl tree at all: the kernel runs with ipv6.disable=1.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn uid_precedence() {
        let o = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(invoking_uid(o("1000"), None, 0).ok(), Some(1000));
        assert_eq!(invoking_uid(None, o("1001"), 0).ok(), Some(1001));
        assert_eq!(invoking_uid(o("1000"), o("1000"), 0).ok(), Some(1000));
        assert_eq!(invoking_uid(None, None, 7).ok(), Some(7));
        assert!(
            invoking_uid(o("0"), o("1000"), 0).is_err(),
            "forged PKEXEC_UID"
        );
        assert!(invoking_uid(o("x"), None, 0).is_err());
        assert!(invoking_uid(o("-1"), None, 0).is_err());
        assert!(invoking_uid(o("4294967295"), None, 0).is_err());
        assert!(invoking_uid(o("\u{0661}"), None, 0).is_err());
        assert!(invoking_uid(o(""), None, 0).is_err());
    }
}
