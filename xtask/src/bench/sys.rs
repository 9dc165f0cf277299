//! The bench's only `unsafe` code: entering a network namespace on the calling thread, waiting
//! for a child with its resource usage, killing it through a pidfd (never by a pid that may
//! have been reused), and noticing Ctrl-C. Each block says why it is sound.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler on SIGINT, SIGTERM or SIGHUP.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the user asked the bench to stop (Ctrl-C, SIGTERM, SIGHUP).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, so that the bench unwinds normally
/// (and its guards delete the namespaces) instead of dying where it stands.
pub fn install_interrupt_handler() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `sa` is zero-initialised (a valid `sigaction`), its mask is emptied with
        // sigemptyset, and the handler is an `extern "C" fn(c_int)` that only stores to an
        // atomic. sigaction copies the struct; a null old-action pointer is allowed.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Moves the *calling thread* into the network namespace `ns` (an open `/run/netns/NAME`).
/// Other threads, the process's `/proc/self/ns/net` and the parent are not affected; children
/// spawned from this thread start in `ns`.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns takes a file descriptor that `ns` keeps open for the call and a namespace
    // type constant; it changes only this thread's namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pidfd for child `pid` (which this process has not reaped yet, so it cannot be reused).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: pidfd_open(pid, 0) has no memory arguments; on success it returns a new file
    // descriptor that nobody else owns, which OwnedFd takes over.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` is a fresh descriptor returned above and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout_ms` for the process behind `pidfd` to exit. `Ok(true)` when it has,
/// `Ok(false)` on timeout or when a signal interrupted the wait.
pub fn wait_exit(pidfd: &OwnedFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack, count 1; poll writes only its `revents`.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// Sends SIGKILL through `pidfd`: it reaches that process or nobody, never a reused pid.
pub fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(fd, SIGKILL, NULL, 0) has no memory arguments (a null siginfo
    // is allowed). An error (the process is gone) is harmless and ignored.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// How a child ended, and its peak resident set.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// The child's peak resident set size in KiB (`ru_maxrss`).
    pub maxrss_kb: u64,
    /// The child's CPU time, user and system (`ru_utime + ru_stime`).
    pub cpu: std::time::Duration,
}

/// Reaps child `pid` (blocking) and returns its exit code and peak RSS.
pub fn reap(pid: u32) -> io::Result<Reaped> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 writes `status` and `usage`,
        // both live locals, and reaps only our own child `pid`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let code = if libc::WIFEXITED(status) {
            Some(libc::WEXITSTATUS(status))
        } else {
            None
        };
        let maxrss_kb = u64::try_from(usage.ru_maxrss).unwrap_or(0);
        let cpu = duration(usage.ru_utime) + duration(usage.ru_stime);
        return Ok(Reaped {
            code,
            maxrss_kb,
            cpu,
        });
    }
}

fn duration(tv: libc::timeval) -> std::time::Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    std::time::Duration::from_secs(secs) + std::time::Duration::from_micros(micros)
}
