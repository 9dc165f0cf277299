//! For the OpenVPN launcher: thin, checked wrappers around libc calls
//! that std does not offer (`openat` with `O_PATH`/`O_NOFOLLOW`, `fstat`, per-thread
//! filesystem credentials, `execveat`, pidfds, NSS lookups).
//!
//! Every wrapper returns `io::Result` and owns the descriptors it creates.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The parts of `struct stat` the launcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner (`st_uid`).
    pub uid: u32,
    /// Number of hard links (`st_nlink`).
    pub nlink: u64,
}

impl Stat {
    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat(dir or AT_FDCWD, path, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; `dirfd` is
    // either AT_FDCWD or a descriptor borrowed for the duration of the call. On success the
    // kernel returns a fresh descriptor that nothing else owns, so wrapping it in OwnedFd is
    // sound.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: see above: `fd` is a new, valid descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` points to writable memory of the right size and type; `fd` is valid for
    // the duration of the call.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so the kernel filled the whole structure (and it was zeroed
    // before anyway).
    let st = unsafe { st.assume_init() };
    Ok(Stat {
        mode: st.st_mode,
        uid: st.st_uid,
        nlink: st.st_nlink,
    })
}

/// Sets or clears `FD_CLOEXEC` on a descriptor.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and write the descriptor flags; an invalid `fd`
    // yields EBADF, which is reported.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    Ok(())
}

/// Switches the filesystem credentials of the *calling thread only* to `uid`/`gid` with the
/// supplementary `groups`, using the raw syscalls (glibc's `setgroups` would change every
/// thread of the process). A thread whose fsuid is not 0 loses the filesystem capabilities
/// (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`, ...), so the kernel then checks
/// path walks and opens exactly as it would for that user, ACLs included. Meant to be called
/// on a short-lived thread that exits afterwards.
pub(crate) fn become_fs_user_on_this_thread(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the raw setgroups syscall reads `groups.len()` gids from a valid buffer and
    // changes only this thread's credentials.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setfsgid/setfsuid take plain integers and change only this thread's
    // filesystem credentials. They report no error, so the result is verified below.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
    // SAFETY: calling with -1 (an invalid id) changes nothing and returns the current value.
    let (now_uid, now_gid) = unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, u32::MAX),
            libc::syscall(libc::SYS_setfsgid, u32::MAX),
        )
    };
    if now_uid != i64::from(uid) || now_gid != i64::from(gid) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "could not switch filesystem credentials",
        ));
    }
    Ok(())
}

/// The primary gid and all group ids of the user `uid` from the system user database, or
/// `None` if the uid has no entry.
pub(crate) fn user_groups(uid: u32) -> Option<(u32, Vec<u32>)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::zeroed();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers refer to live, writable buffers of the stated sizes; getpwuid_r
    // stores into `pwd`/`buf` only and sets `result` to `pwd` or NULL.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: `result` is non-null, so `pwd` was initialised; its string pointers point into
    // `buf`, which is still alive.
    let pwd = unsafe { pwd.assume_init() };
    let gid = pwd.pw_gid;
    let mut groups: Vec<libc::gid_t> = vec![0; 256];
    let mut n: libc::c_int = 256;
    loop {
        // SAFETY: `pw_name` is a valid C string inside `buf`; `groups` has room for `n` gids.
        let r = unsafe { libc::getgrouplist(pwd.pw_name, gid, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            groups.truncate(usize::try_from(n).unwrap_or(0));
            return Some((gid, groups));
        }
        let want = usize::try_from(n).unwrap_or(0);
        if want <= groups.len() || want > 65536 {
            return Some((gid, vec![gid]));
        }
        groups.resize(want, 0);
    }
}

/// True if a group called `name` exists in the system group database.
pub(crate) fn group_exists(name: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut grp = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers refer to live, writable buffers of the stated sizes.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            grp.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    rc == 0 && !result.is_null()
}

/// The real uid of this process.
pub(crate) fn real_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no side effects.
    unsafe { libc::getuid() }
}

/// The pid of this process.
pub(crate) fn own_pid() -> u32 {
    // SAFETY: getpid cannot fail and has no side effects.
    let pid = unsafe { libc::getpid() };
    u32::try_from(pid).unwrap_or(0)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: executes the file behind `fd` (which was
/// checked through that same descriptor, so no path can be swapped in between). Only
/// returns on failure.
pub(crate) fn fexecve(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let empty = c"";
    // SAFETY: `argv_p` and `envp_p` are NULL-terminated arrays of pointers to NUL-terminated
    // strings owned by `argv`/`envp`, which outlive the call; `fd` is valid. On success the
    // call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: plain integer arguments; the result is a new descriptor or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::other("bad descriptor"))?;
    // SAFETY: `fd` is a fresh pidfd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals exactly the process behind the pidfd,
/// never a process that reused its pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments and a NULL siginfo, which the syscall allows.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `timeout_ms` for `fd` to become readable (a pidfd does when its process
/// exits). Returns true if it did.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// The effective uid of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() }
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is a valid C string and `dir` a valid descriptor for the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    Ok(())
}

/// `renameat(dir, from, dir, to)`: atomically replaces `to`.
pub(crate) fn renameat(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings and a valid directory descriptor for the duration of the call.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })?;
    Ok(())
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C string and a valid directory descriptor for the duration of the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

/// `faccessat2(dir, ".", mode, AT_EACCESS)` as a raw syscall (glibc may emulate it in user
/// space): checks `mode` on the directory with the calling thread's *current* filesystem
/// credentials (see [`become_fs_user_on_this_thread`]).
pub(crate) fn dir_access(dir: BorrowedFd<'_>, mode: libc::c_int) -> io::Result<()> {
    let dot = c".";
    // SAFETY: a valid C string and a valid descriptor for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            dir.as_raw_fd(),
            dot.as_ptr(),
            mode,
            libc::AT_EACCESS,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
