//! The only module with `unsafe`: entering a network namespace, AF_PACKET sockets,
//! interface lookup, raw receives and the stack limit. Each block says why it is sound.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The network namespace of the machine itself (that of PID 1).
pub const INITIAL_NETNS: &str = "/proc/1/ns/net";

/// The inode the kernel gives the initial network namespace on kernels where it is fixed
/// (`PROC_NET_INIT_INO`, 0xEFFFFFF9).
pub const NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// Identities of namespaces the harness must never act in: PID 1's (when readable: in some
/// containers it is not, even for root), this process's own (its main thread never leaves
/// it), and any namespace with the kernel's fixed initial-namespace inode.
pub fn forbidden(id: (u64, u64)) -> io::Result<bool> {
    if id.1 == NET_INIT_INO {
        return Ok(true);
    }
    if ns_id(Path::new("/proc/self/ns/net"))? == id {
        return Ok(true);
    }
    match ns_id(Path::new(INITIAL_NETNS)) {
        Ok(init) => Ok(init == id),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(false),
        Err(e) => Err(e),
    }
}

/// Identity of a namespace file: (device, inode).
pub fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Moves the calling thread into the network namespace at `path` and checks that it worked:
/// afterwards the thread's own namespace is the target and is not the initial one.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let target = ns_id(path)?;
    if forbidden(target)? {
        return Err(io::Error::other(format!(
            "{} is the initial network namespace: refusing to enter it",
            path.display()
        )));
    }
    let file = File::open(path)?;
    // SAFETY: `file` is an open descriptor for the namespace file and outlives the call;
    // setns only changes the calling thread's network namespace and touches no Rust memory.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let now = ns_id(Path::new("/proc/thread-self/ns/net"))?;
    if now != target || forbidden(now)? {
        return Err(io::Error::other(format!(
            "setns into {} did not take effect",
            path.display()
        )));
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string that lives for the whole call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// Opens an AF_PACKET/SOCK_DGRAM socket for every protocol, bound to interface `ifindex`
/// of the calling thread's namespace, with a receive timeout of `timeout_ms`.
pub fn packet_socket(ifindex: u32, timeout_ms: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the returned descriptor is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own exclusively.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
    // SAFETY: the pointer and length describe `sll`, which lives for the call.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: libc::time_t::from(timeout_ms / 1000),
        tv_usec: libc::suseconds_t::from((timeout_ms % 1000) * 1000),
    };
    // SAFETY: the pointer and length describe `tv`, which lives for the call.
    let rc = unsafe {
        libc::setsockopt(
            owned.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// One frame from [`packet_socket`]: its length, ethertype and packet type (`PACKET_*`).
pub struct Frame {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// Ethertype in host order.
    pub protocol: u16,
    /// `libc::PACKET_HOST`, `PACKET_OUTGOING`, ...
    pub pkttype: u8,
}

/// Receives one frame from a packet socket into `buf`.
pub fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Frame> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `sll`/`len` describe a
    // writable sockaddr_ll; all outlive the call.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Frame {
        len: n as usize,
        protocol: u16::from_be(sll.sll_protocol),
        pkttype: sll.sll_pkttype,
    })
}

/// `recv_from` on a socket2 socket into an initialised buffer.
pub fn recv_from(sock: &socket2::Socket, buf: &mut [u8]) -> io::Result<(usize, socket2::SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and recv_from only
    // writes initialised bytes into the buffer, so `buf` stays fully initialised.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    sock.recv_from(uninit)
}

/// Raises this process's soft stack limit to at least `bytes` (capped by the hard limit),
/// which raises the size of argument lists that children may be exec'd with.
pub fn raise_stack_limit(bytes: u64) -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = bytes.min(lim.rlim_max);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_STACK, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `IP_MULTICAST_IF` by interface index (an `ip_mreqn`), which socket2 does not offer.
pub fn set_multicast_if_v4_index(sock: &socket2::Socket, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: i32::try_from(ifindex).map_err(io::Error::other)?,
    };
    // SAFETY: the pointer and length describe `mreqn`, which lives for the call; the
    // descriptor belongs to `sock`, which is borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGKILL to process `pid`.
pub fn sigkill(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends signal `sig` to process `pid`.
pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
