//! `openvpn stop`: stops exactly the process `start` launched.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::Error;
use super::pidfile;
use super::process::{self, Identity};
use crate::sys::openvpn as sys;

/// How long openvpn gets to exit after SIGTERM before SIGKILL.
pub const TERM_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT_MS: i32 = 2000;

/// The result of a successful `openvpn stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// openvpn exited after SIGTERM.
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// openvpn ignored SIGTERM for the timeout and was killed with SIGKILL.
    Killed {
        /// Its pid.
        pid: u32,
    },
    /// No openvpn started by bitmask-root is running (no pid file, or a stale one, which
    /// is removed).
    NotRunning,
}

/// Stops the openvpn recorded in the pid file under `run_dir`, if it is still ours.
pub(crate) fn stop_in(run_dir: &Path, allowed: &[PathBuf]) -> Result<StopOutcome, Error> {
    let Some(dir) = pidfile::open_dir(run_dir, false)? else {
        return Ok(StopOutcome::NotRunning);
    };
    let Some(rec) = pidfile::read(&dir, run_dir)? else {
        return Ok(StopOutcome::NotRunning);
    };
    let binaries = process::canonical_binaries(allowed);
    let pidfd = match sys::pidfd_open(rec.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            pidfile::remove(&dir, run_dir)?;
            return Ok(StopOutcome::NotRunning);
        }
        Err(e) => {
            return Err(Error::StopFailed {
                pid: rec.pid,
                reason: format!("pidfd_open: {e}"),
            })
        }
    };
    // Identify after opening the pidfd: if the pid was reused before pidfd_open, the start
    // time differs and we leave that process alone. If it is bitmask-root mid-exec, give it
    // a moment to become openvpn.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match process::identify(rec, &binaries) {
            Identity::Ours => break,
            Identity::Gone => {
                pidfile::remove(&dir, run_dir)?;
                return Ok(StopOutcome::NotRunning);
            }
            Identity::NotOpenvpn if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Identity::NotOpenvpn => {
                return Err(Error::StopFailed {
                    pid: rec.pid,
                    reason:
                        "the recorded process is not openvpn started by bitmask-root; left alone"
                            .into(),
                })
            }
        }
    }
    let fail = |reason: String| Error::StopFailed {
        pid: rec.pid,
        reason,
    };
    sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGTERM)
        .map_err(|e| fail(format!("SIGTERM: {e}")))?;
    let term_ms = i32::try_from(TERM_TIMEOUT.as_millis()).unwrap_or(5000);
    if sys::wait_readable(pidfd.as_fd(), term_ms).map_err(|e| fail(e.to_string()))? {
        pidfile::remove(&dir, run_dir)?;
        return Ok(StopOutcome::Stopped { pid: rec.pid });
    }
    sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL)
        .map_err(|e| fail(format!("SIGKILL: {e}")))?;
    if sys::wait_readable(pidfd.as_fd(), KILL_TIMEOUT_MS).map_err(|e| fail(e.to_string()))? {
        pidfile::remove(&dir, run_dir)?;
        return Ok(StopOutcome::Killed { pid: rec.pid });
    }
    Err(fail("still running after SIGTERM and SIGKILL".into()))
}
