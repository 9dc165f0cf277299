//! `openvpn start`: the only place in `src/` that starts a process. It replaces the current
//! process with openvpn through `execveat` on the checked binary's descriptor, never through
//! a shell, so the caller (the Go client waits on `pkexec bitmask-root openvpn start ...`)
//! keeps waiting on openvpn itself, and the pid in the pid file is openvpn's.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use super::error::Error;
use super::pidfile::{self, Record};
use super::process::{self, Identity};
use super::validate::{self, Prepared};
use super::LaunchEnv;
use crate::sys::openvpn as sys;

/// The whole environment openvpn gets. Nothing of the caller's environment is passed on
/// (sudo setups may keep variables that pkexec would have removed).
const CLEAN_ENV: &[&str] = &["PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

/// Validates, records the pid file and execs openvpn. Returns only on failure.
pub(crate) fn start(args: &[String], env: &LaunchEnv) -> Result<Infallible, Error> {
    let v = validate::validate_full(args, env)?;
    let (binary, prepared) = validate::prepare(v, env)?;

    let dir = pidfile::open_dir(&env.run_dir, true)?.ok_or_else(|| Error::PidFile {
        path: env.run_dir.clone(),
        reason: "could not create the directory".into(),
    })?;
    if let Some(rec) = pidfile::read(&dir, &env.run_dir)? {
        let binaries = process::canonical_binaries(&env.openvpn_paths);
        if process::identify(rec, &binaries) == Identity::Ours {
            return Err(Error::AlreadyRunning { pid: rec.pid });
        }
    }
    let pid = sys::own_pid();
    let (starttime, _) = process::stat(pid).ok_or_else(|| Error::PidFile {
        path: env.run_dir.clone(),
        reason: "cannot read our own /proc/PID/stat".into(),
    })?;
    pidfile::write(&dir, &env.run_dir, Record { pid, starttime })?;

    let err = exec(&binary.fd, &prepared);
    // exec failed: we are still bitmask-root; do not leave a pid file pointing at us.
    let _ = pidfile::remove(&dir, &env.run_dir);
    Err(Error::Exec {
        path: binary.path,
        source: err,
    })
}

fn exec(bin: &std::os::fd::OwnedFd, p: &Prepared) -> std::io::Error {
    let keep: Vec<RawFd> = p.keep.iter().map(|f| f.as_raw_fd()).collect();
    if let Err(e) = close_on_exec_all_but(&keep) {
        return e;
    }
    let envp: Vec<CString> = CLEAN_ENV
        .iter()
        .filter_map(|s| CString::new(*s).ok())
        .collect();
    sys::fexecve(bin.as_fd(), &p.argv, &envp)
}

/// Marks every descriptor above stderr close-on-exec except `keep`, whose flag is cleared:
/// openvpn inherits stdin/stdout/stderr and the checked files, nothing else (no netlink
/// sockets or other state of the CLI).
fn close_on_exec_all_but(keep: &[RawFd]) -> std::io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // The descriptor of the read_dir above is already closed; EBADF is fine.
            let _ = sys::set_cloexec(fd, true);
        }
    }
    for fd in keep {
        sys::set_cloexec(*fd, false)?;
    }
    Ok(())
}
