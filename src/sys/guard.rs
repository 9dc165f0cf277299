//! What the firewall guard needs beyond `std` and tokio: a non-blocking exclusive `flock`
//! (the one-guard-per-namespace lock, released by the kernel when the process dies) and the
//! calling thread's id (to tell the guard's own nftables commits from other programs').

use std::io;
use std::os::fd::AsRawFd;

/// Takes an exclusive `flock` on `fd` without waiting. `Ok(false)` when another open file
/// description holds it.
pub fn try_lock_exclusive(fd: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: flock takes a descriptor and flags; `fd` owns a live descriptor for the call.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The calling thread's id, as the kernel reports it in nftables notifications.
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}
