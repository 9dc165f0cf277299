//! A blocking netlink socket: `socket`, `sendmsg` of a message in parts, `recv`, and the few
//! socket options the commands need. Used for netfilter (the nftables batch, dumps, the
//! generation) and for rtnetlink (discovery's dumps).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: i32 = libc::NETLINK_NETFILTER;
/// `NETLINK_ROUTE`.
pub const NETLINK_ROUTE: i32 = libc::NETLINK_ROUTE;

/// An open netlink socket. It is bound by the kernel on its first send, and talks to the
/// kernel only (it joins no multicast group, so everything it receives answers it).
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    /// Opens a netlink socket of `protocol` (close-on-exec).
    pub fn open(protocol: i32) -> io::Result<NetlinkSocket> {
        // SAFETY: socket() takes three integer arguments and touches no memory of ours.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor socket() just returned; nothing else owns it.
        Ok(NetlinkSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Binds the socket to a port id the kernel picks (it would otherwise do so on the first
    /// send), so that [`NetlinkSocket::portid`] is known from the start.
    pub fn bind(&self) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid (port id 0: the kernel picks one; no
        // groups).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the pointer and length describe `addr`, live for the call; the kernel only
        // reads it.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The socket's netlink port id (0 before it is bound).
    pub fn portid(&self) -> io::Result<u32> {
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel overwrites it.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: the pointers describe `addr` and `len`, live and writable for the call;
        // the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                &mut addr as *mut libc::sockaddr_nl as *mut libc::sockaddr,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(addr.nl_pid)
    }

    /// Sends `parts`, concatenated, as one datagram to the kernel; returns the bytes sent.
    pub fn send(&self, parts: &[&[u8]]) -> io::Result<usize> {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: an all-zero msghdr is valid (no name: an unconnected netlink socket sends
        // to the kernel; no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` points at `iov`, whose entries describe the live, borrowed `parts`
        // (the kernel only reads them); both outlive the call.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Receives one datagram into `buf`, replacing what it held; the datagram is written into
    /// the buffer's capacity, which is never zeroed first. Returns the datagram's length,
    /// larger than `buf.len()` when it did not fit the capacity (the rest is lost).
    pub fn recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.recv_flags(buf, 0)
    }

    /// Like [`NetlinkSocket::recv`] but without waiting: `None` when nothing is queued.
    pub fn recv_nowait(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match self.recv_flags(buf, libc::MSG_DONTWAIT) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_flags(&self, buf: &mut Vec<u8>, flags: i32) -> io::Result<usize> {
        buf.clear();
        let capacity = buf.capacity();
        loop {
            // SAFETY: the pointer and length describe `buf`'s allocation (its capacity),
            // borrowed mutably for the call; the kernel writes at most `capacity` bytes there.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut c_void,
                    capacity,
                    libc::MSG_TRUNC | flags,
                )
            };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the kernel initialised the first min(n, capacity) bytes (with
                // MSG_TRUNC, `n` is the datagram's full length, possibly more than it wrote).
                unsafe { buf.set_len(n.min(capacity)) };
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
