//! Checks of the files a caller names, made *as the invoking user*.
//!
//! Approach: the checks run on a short-lived thread whose filesystem credentials (fsuid,
//! fsgid, supplementary groups; see `sys::become_fs_user_on_this_thread`) are switched to
//! the invoking user's. The kernel therefore applies that user's permissions to every path
//! component, to ACLs and to the final open; root's `CAP_DAC_*` do not apply. The last
//! component is opened with `O_NOFOLLOW`, so a symlink there is refused; symlinks in
//! directory components are followed with the user's rights, which grants nothing the user
//! could not reach anyway.
//!
//! The descriptors opened here are what openvpn later reads: `start` passes
//! `/proc/self/fd/N` instead of the path, so a path swapped after the check changes nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::values::abs_path;
use crate::sys::openvpn as sys;

/// The credentials of the invoking user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserCreds {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// All group ids.
    pub groups: Vec<u32>,
}

/// gid used for a uid without a passwd entry (`nogroup`).
const NOGROUP: u32 = 65534;

impl UserCreds {
    /// Looks the user up; a uid without a passwd entry gets `nogroup` and no other group.
    pub fn lookup(uid: u32) -> Self {
        match sys::user_groups(uid) {
            Some((gid, groups)) => UserCreds { uid, gid, groups },
            None => UserCreds {
                uid,
                gid: NOGROUP,
                groups: vec![NOGROUP],
            },
        }
    }

    /// Runs `f` with this user's filesystem credentials (on a separate thread unless the
    /// user is root or this process already runs as that user).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        // Root needs no switch; neither does a process already running as that user
        // (e.g. a dry run by the user), which could not switch anyway.
        if self.uid == 0 || sys::effective_uid() == self.uid {
            return Ok(f());
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                sys::become_fs_user_on_this_thread(self.uid, self.gid, &self.groups)
                    .map_err(|e| format!("cannot take the invoking user's credentials: {e}"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| "file check failed".to_string())?
        })
    }
}

fn cpath(path: &str) -> Result<CString, String> {
    CString::new(abs_path(path)?).map_err(|_| "path contains NUL".to_string())
}

fn explain(e: &io::Error, uid: u32) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "is a symbolic link".into(),
        Some(libc::ENOENT) => "does not exist".into(),
        Some(libc::ENOTDIR) => "a path component is not a directory".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("uid {uid} may not access it"),
        _ => e.to_string(),
    }
}

/// Splits an absolute path into its parent directory and last component.
fn split(path: &str) -> Result<(CString, CString), String> {
    let p = abs_path(path)?;
    let idx = p.rfind('/').ok_or("not an absolute path")?;
    let dir = if idx == 0 { "/" } else { &p[..idx] };
    let name = &p[idx + 1..];
    Ok((
        CString::new(dir).map_err(|_| "path contains NUL")?,
        CString::new(name).map_err(|_| "path contains NUL")?,
    ))
}

fn reopen(fd: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    let magic = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::other("bad fd path"))?;
    sys::openat(None, &magic, flags, 0)
}

/// Opens `path` for reading as the invoking user: it must be an absolute path to a regular
/// file (not a symlink) that user can read. Returns the read-only descriptor.
pub(crate) fn open_readable(creds: &UserCreds, path: &str) -> Result<OwnedFd, String> {
    let c = cpath(path)?;
    let uid = creds.uid;
    creds.run(|| {
        // O_PATH first: opening a device or FIFO for real could have side effects.
        let p = sys::openat(None, &c, libc::O_PATH | libc::O_NOFOLLOW, 0)
            .map_err(|e| explain(&e, uid))?;
        let st = sys::fstat(p.as_fd()).map_err(|e| e.to_string())?;
        if st.mode & libc::S_IFMT == libc::S_IFLNK {
            return Err("is a symbolic link".to_string());
        }
        if !st.is_file() {
            return Err("not a regular file".to_string());
        }
        // Re-open the very same inode for reading: the kernel checks read permission
        // (mode bits and ACLs) with the user's credentials.
        let fd = reopen(&p, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK)
            .map_err(|e| explain(&e, uid))?;
        let st2 = sys::fstat(fd.as_fd()).map_err(|e| e.to_string())?;
        if !st2.is_file() {
            return Err("not a regular file".to_string());
        }
        Ok(fd)
    })?
}

/// Checks a log file path without creating anything: the parent directory must be
/// reachable by the invoking user, and an existing file there must be a regular file, not a
/// symlink, with a single link, owned by that user.
pub(crate) fn check_log(creds: &UserCreds, path: &str) -> Result<(), String> {
    let (dir, name) = split(path)?;
    let uid = creds.uid;
    creds.run(|| {
        let d = sys::openat(None, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| format!("directory {}", explain(&e, uid)))?;
        match sys::openat(Some(d.as_fd()), &name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(f) => check_own_log(&f, uid),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                sys::dir_access(d.as_fd(), libc::W_OK | libc::X_OK)
                    .map_err(|_| format!("uid {uid} may not create files in the directory"))
            }
            Err(e) => Err(explain(&e, uid)),
        }
    })?
}

fn check_own_log(f: &OwnedFd, uid: u32) -> Result<(), String> {
    let st = sys::fstat(f.as_fd()).map_err(|e| e.to_string())?;
    if st.mode & libc::S_IFMT == libc::S_IFLNK {
        return Err("is a symbolic link".into());
    }
    if !st.is_file() {
        return Err("exists and is not a regular file".into());
    }
    if st.uid != uid {
        return Err(format!("exists and is owned by uid {}, not {uid}", st.uid));
    }
    if st.nlink != 1 {
        return Err("exists with more than one hard link".into());
    }
    Ok(())
}

/// Creates (or opens) the log file as the invoking user, never following a symlink, and
/// returns it opened for writing. The file ends up owned by that user, mode 0600 if new.
pub(crate) fn create_log(creds: &UserCreds, path: &str) -> Result<OwnedFd, String> {
    let (dir, name) = split(path)?;
    let uid = creds.uid;
    creds.run(|| {
        let d = sys::openat(None, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| format!("directory {}", explain(&e, uid)))?;
        let f = sys::openat(
            Some(d.as_fd()),
            &name,
            libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_APPEND
                | libc::O_NOFOLLOW
                | libc::O_NOCTTY
                | libc::O_NONBLOCK,
            0o600,
        )
        .map_err(|e| explain(&e, uid))?;
        check_own_log(&f, uid)?;
        Ok(f)
    })?
}

/// For a management unix socket: the parent directory must be a directory the invoking
/// user owns and the socket must not exist yet. Returns the directory (an `O_PATH`
/// descriptor, so openvpn can bind `/proc/self/fd/N/NAME` in that very directory) and the
/// socket's name.
pub(crate) fn socket_dir(creds: &UserCreds, path: &str) -> Result<(OwnedFd, CString), String> {
    if path.len() > 100 {
        return Err("socket path too long (at most 100 bytes)".into());
    }
    let (dir, name) = split(path)?;
    if name.as_bytes().len() > 64 {
        return Err("socket name too long (at most 64 bytes)".into());
    }
    let uid = creds.uid;
    creds.run(|| {
        let d = sys::openat(None, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| format!("directory {}", explain(&e, uid)))?;
        let st = sys::fstat(d.as_fd()).map_err(|e| e.to_string())?;
        if st.uid != uid {
            return Err(format!(
                "directory is owned by uid {}, not by the invoking uid {uid}",
                st.uid
            ));
        }
        match sys::openat(Some(d.as_fd()), &name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(_) => Err("already exists".to_string()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((d, name)),
            Err(e) => Err(explain(&e, uid)),
        }
    })?
}
