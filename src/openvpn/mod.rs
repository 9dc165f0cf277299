//! `bitmask-root openvpn start | stop`: a hardened OpenVPN launcher.
//!
//! `bitmask-root` runs as root for any local user (the polkit policy asks for no password),
//! so these checks are the only thing between a user and root:
//!
//! * the openvpn binary comes from a fixed list ([`OPENVPN_PATHS`]) and must be root's all
//!   the way down; a leading path argument must name one of them;
//! * the fixed options of the original helper come first ([`allowlist::FIXED`]);
//! * every caller option must be on the allow list ([`allowlist::ALLOWED`]) with values of
//!   strict types; files are checked and opened *as the invoking user* and handed to openvpn
//!   as `/proc/self/fd/N`; unknown options, wrong counts and bad values are refused (exit 2);
//! * `start` records `PID STARTTIME` in `/run/bitmask-root/openvpn.pid` and execs openvpn
//!   directly (no shell, clean environment); `stop` signals exactly that process through a
//!   pidfd, after checking its start time, executable and command-line marker.

pub mod allowlist;
mod binary;
mod env;
mod error;
mod files;
mod launch;
pub mod pidfile;
mod process;
mod stop;

mod validate;
mod values;

use std::convert::Infallible;
use std::ffi::OsString;

pub use binary::OPENVPN_PATHS;
pub use env::LaunchEnv;
pub use error::Error;
pub use stop::{StopOutcome, TERM_TIMEOUT};
pub use validate::audit_argv;

/// `openvpn start [restart] [OPENVPN_PATH] ARGS...`: validates `args` (the words after
/// `start`), writes the pid file and replaces this process with openvpn. Returns only on
/// failure; on success the process *is* openvpn, so callers that wait on bitmask-root keep
/// waiting on openvpn, as with the original helper.
pub fn start(args: &[String], env: &LaunchEnv) -> Result<Infallible, Error> {
    launch::start(args, env)
}

/// `openvpn stop`: SIGTERM to the openvpn recorded in the pid file (if it is still the
/// process we started), wait up to [`TERM_TIMEOUT`], then SIGKILL. `Ok` when stopped or not
/// running; `Err` (exit 1) when it could not be stopped.
pub fn stop() -> Result<StopOutcome, Error> {
    let env = LaunchEnv::detect()?;
    stop::stop_in(&env.run_dir, &env.openvpn_paths)
}

/// Validates `args` (the words after `openvpn start`) and returns the full argv that
/// `start` would execute, with file arguments as given. (`start` itself passes each checked
/// file as `/proc/self/fd/N` of the descriptor opened during the check, so a file swapped
/// afterwards is never read.) Touches the filesystem only to check, never to create.
pub fn validate(args: &[String], env: &LaunchEnv) -> Result<Vec<OsString>, Error> {
    validate::validate_full(args, env).map(|v| v.display_argv())
}

#[cfg(test)]
mod tests;
