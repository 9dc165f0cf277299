//! What the firewall guard needs beyond `std` and tokio besides `flock` (which is in
//! [`super::flock`]): the calling thread's id, to tell the guard's own nftables commits from
//! other programs'.

/// The calling thread's id, as the kernel reports it in nftables notifications.
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}
