//! Socket options for netlink sockets, and the effective user id.

use std::ffi::c_void;
use std::io;
use std::os::fd::AsRawFd;

/// Sets an integer socket option.
fn setsockopt_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live c_int; the fd is owned by `fd`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sizes a socket's buffers: the FORCE variants (root) first, the capped ones otherwise.
pub fn size_socket_buffers(fd: &impl AsRawFd, rcv: usize, snd: usize) -> io::Result<()> {
    let rcv = rcv.min(i32::MAX as usize / 2) as i32;
    let snd = snd.min(i32::MAX as usize / 2) as i32;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv)
        .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcv))?;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd)
        .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, snd))
}

/// Asks the kernel not to echo the whole request in error messages (`NETLINK_CAP_ACK`): an
/// error then fits a small buffer however large the refused message was.
pub fn cap_acks(fd: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)
}

/// Bounds how long a receive may block, so a silent kernel cannot hang the command.
pub fn set_receive_timeout(fd: &impl AsRawFd, secs: i64) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: the pointer and length describe a live timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
