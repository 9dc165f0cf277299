//! `flock(2)`, for the per-namespace command lock ([`crate::nft::lock`]) and the guard's own
//! lock ([`crate::firewall::guard::control`]). The standard library's `File::try_lock` needs
//! Rust 1.89; the crate builds with 1.85.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Tries to take an exclusive `flock` on `file` without waiting. `Ok(true)`: taken (held
/// until every descriptor of this open file is closed, by the kernel also when the process
/// dies); `Ok(false)`: another open file holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock only reads its two integer arguments; the descriptor is owned by `file`,
    // which outlives the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}
