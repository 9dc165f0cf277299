//! The pid file `openvpn.pid` in the run directory: `PID STARTTIME\n`, where STARTTIME is
//! field 22 of `/proc/PID/stat` (so a reused pid is never mistaken for ours).
//!
//! The run directory is `/run/bitmask-root`. Tests may point it elsewhere with the
//! environment variable `BITMASK_ROOT_RUN_DIR`, which is honoured only when both the real
//! uid and the invoking uid are root (so a user elevated through sudo cannot steer where
//! root writes), and the directory must, like the default one, be owned by us, not be a
//! symlink and not be writable by group or others.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::Error;
use crate::sys::openvpn as sys;

/// The default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/bitmask-root";
/// The environment variable that overrides it (root only, for tests).
pub const RUN_DIR_ENV: &str = "BITMASK_ROOT_RUN_DIR";
const NAME: &std::ffi::CStr = c"openvpn.pid";

/// The run directory for a caller with invoking uid `invoking_uid`.
pub fn run_dir(invoking_uid: u32) -> PathBuf {
    if invoking_uid == 0 && sys::real_uid() == 0 {
        if let Some(d) = std::env::var_os(RUN_DIR_ENV) {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                return p;
            }
        }
    }
    PathBuf::from(DEFAULT_RUN_DIR)
}

/// What the pid file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub starttime: u64,
}

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::PidFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn cstr(p: &Path) -> Result<CString, Error> {
    CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
        .map_err(|_| err(p, "path contains NUL"))
}

/// Opens the run directory (creating it, mode 0755, if `create`). Returns `None` if it does
/// not exist and `create` is false.
pub(crate) fn open_dir(dir: &Path, create: bool) -> Result<Option<OwnedFd>, Error> {
    let c = cstr(dir)?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let fd = match sys::openat(None, &c, flags, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
            let parent = dir
                .parent()
                .ok_or_else(|| err(dir, "no parent directory"))?;
            let name = dir
                .file_name()
                .ok_or_else(|| err(dir, "no directory name"))?;
            let pfd = sys::openat(None, &cstr(parent)?, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| err(parent, e.to_string()))?;
            match sys::mkdirat(pfd.as_fd(), &cstr(Path::new(name))?, 0o755) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(dir, e.to_string())),
            }
            sys::openat(None, &c, flags, 0).map_err(|e| err(dir, e.to_string()))?
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => {
            return Err(err(
                dir,
                format!("{e} (it must be a directory, not a symlink)"),
            ))
        }
    };
    let st = sys::fstat(fd.as_fd()).map_err(|e| err(dir, e.to_string()))?;
    let me = sys::effective_uid();
    if st.uid != me || st.mode & 0o022 != 0 {
        return Err(err(
            dir,
            format!("directory must be owned by uid {me} and not writable by group or others"),
        ));
    }
    Ok(Some(fd))
}

/// Reads the record, `None` if there is no pid file. A malformed file is an error.
pub(crate) fn read(dir: &OwnedFd, dir_path: &Path) -> Result<Option<Record>, Error> {
    let path = dir_path.join("openvpn.pid");
    let fd = match sys::openat(
        Some(dir.as_fd()),
        NAME,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(err(&path, e.to_string())),
    };
    let st = sys::fstat(fd.as_fd()).map_err(|e| err(&path, e.to_string()))?;
    if !st.is_file() || st.uid != sys::effective_uid() {
        return Err(err(&path, "not a regular file owned by us"));
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(64)
        .read_to_end(&mut buf)
        .map_err(|e| err(&path, e.to_string()))?;
    parse(&buf)
        .map(Some)
        .ok_or_else(|| err(&path, "malformed (expected `PID STARTTIME`)"))
}

fn parse(buf: &[u8]) -> Option<Record> {
    let s = std::str::from_utf8(buf).ok()?;
    let s = s.strip_suffix('\n')?;
    let (pid, st) = s.split_once(' ')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 20 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(st) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    if pid == 0 {
        return None;
    }
    Some(Record {
        pid,
        starttime: st.parse().ok()?,
    })
}

/// Writes the record atomically (temporary file, then rename).
pub(crate) fn write(dir: &OwnedFd, dir_path: &Path, rec: Record) -> Result<(), Error> {
    let path = dir_path.join("openvpn.pid");
    let tmp =
        CString::new(format!("openvpn.pid.{}.tmp", rec.pid)).map_err(|_| err(&path, "bad name"))?;
    let _ = sys::unlinkat(dir.as_fd(), &tmp);
    let fd = sys::openat(
        Some(dir.as_fd()),
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o644,
    )
    .map_err(|e| err(&path, e.to_string()))?;
    let mut f = std::fs::File::from(fd);
    let res = f
        .write_all(format!("{} {}\n", rec.pid, rec.starttime).as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| sys::renameat(dir.as_fd(), &tmp, NAME));
    if let Err(e) = res {
        let _ = sys::unlinkat(dir.as_fd(), &tmp);
        return Err(err(&path, e.to_string()));
    }
    Ok(())
}

/// Removes the pid file; a missing file is fine.
pub(crate) fn remove(dir: &OwnedFd, dir_path: &Path) -> Result<(), Error> {
    match sys::unlinkat(dir.as_fd(), NAME) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(err(&dir_path.join("openvpn.pid"), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_strict() {
        assert_eq!(
            parse(b"12 345\n"),
            Some(Record {
                pid: 12,
                starttime: 345
            })
        );
        for bad in [
            &b"12 345"[..],
            b"12\n",
            b"0 1\n",
            b"-1 2\n",
            b"1  2\n",
            b"\xd9\xa1 2\n",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn write_read_remove_roundtrip() {
        let dir = std::env::temp_dir().join(format!("bmr-pid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fd = open_dir(&dir, true).expect("open").expect("created");
        assert_eq!(read(&fd, &dir).expect("read"), None);
        let rec = Record {
            pid: 42,
            starttime: 7,
        };
        write(&fd, &dir, rec).expect("write");
        assert_eq!(read(&fd, &dir).expect("read"), Some(rec));
        remove(&fd, &dir).expect("remove");
        assert_eq!(read(&fd, &dir).expect("read"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unsafe_run_dir_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bmr-pidw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(open_dir(&dir, false).is_err());
        let link = std::env::temp_dir().join(format!("bmr-pidl-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/etc", &link).expect("symlink");
        assert!(open_dir(&link, false).is_err());
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
