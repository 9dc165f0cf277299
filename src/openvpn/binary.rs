//! Which openvpn binary may run: a fixed list of paths, each checked to be root's.
//!
//! The list is compiled in. It is deliberately **not** configurable by an environment
//! variable: bitmask-root runs as root for any local user, and an environment variable that
//! picks the binary would let a user run a program of their choice as root wherever the
//! environment survives (sudo with `env_keep`, doas `keepenv`). Tests and the fuzzer pass
//! their own list through [`super::LaunchEnv::openvpn_paths`], which only code can set.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::sys::openvpn as sys;

/// The allowed openvpn binaries, in order of preference: the Debian path first, then the
/// original helper's others (bundle and snap).
pub const OPENVPN_PATHS: &[&str] = &[
    "/usr/sbin/openvpn",
    "/usr/local/sbin/leap-openvpn",
    "/snap/bin/riseup-vpn.openvpn",
];

/// A checked openvpn binary, held open so that exactly the checked file is executed.
#[derive(Debug)]
pub(crate) struct Binary {
    /// The path as listed (used as `argv[0]`).
    pub path: PathBuf,
    /// An `O_PATH` descriptor of the checked file, executed with `execveat`.
    pub fd: OwnedFd,
}

/// Resolves `path` and checks that every component of the resolved path is owned by root
/// and not writable by group or others, and that the file is a regular, executable file.
/// Components are opened one by one from `/` with `O_NOFOLLOW`, so nothing can be swapped in
/// between the check and the exec (which uses the returned descriptor).
pub(crate) fn check(path: &Path) -> Result<Binary, String> {
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let comps: Vec<&std::ffi::OsStr> = canonical
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut dir = sys::openat(None, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("/: {e}"))?;
    check_root_owned(&dir, Path::new("/"))?;
    let mut so_far = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        so_far.push(name);
        let cname = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(*name))
            .map_err(|_| "path contains NUL".to_string())?;
        let fd = sys::openat(
            Some(dir.as_fd()),
            &cname,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|e| format!("{}: {e}", so_far.display()))?;
        let st = check_root_owned(&fd, &so_far)?;
        let last = i + 1 == comps.len();
        if last {
            if !st.is_file() {
                return Err(format!("{} is not a regular file", so_far.display()));
            }
            if st.mode & 0o111 == 0 {
                return Err(format!("{} is not executable", so_far.display()));
            }
        } else if !st.is_dir() {
            return Err(format!("{} is not a directory", so_far.display()));
        }
        dir = fd;
    }
    Ok(Binary {
        path: path.to_path_buf(),
        fd: dir,
    })
}

fn check_root_owned(fd: &OwnedFd, path: &Path) -> Result<sys::Stat, String> {
    let st = sys::fstat(fd.as_fd()).map_err(|e| format!("{}: {e}", path.display()))?;
    if st.uid != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            st.uid
        ));
    }
    if st.mode & 0o022 != 0 {
        return Err(format!("{} is writable by group or others", path.display()));
    }
    Ok(st)
}

/// Picks the binary: the `requested` path if given (it must be one of `allowed`), else the
/// first path of `allowed` that exists. The chosen file must pass [`check`]; an unsafe file
/// is an error, never a reason to fall through to the next path.
pub(crate) fn choose(requested: Option<&str>, allowed: &[PathBuf]) -> Result<Binary, ChooseError> {
    let path = match requested {
        Some(r) => allowed
            .iter()
            .find(|p| p.as_os_str() == r)
            .ok_or(ChooseError::NotAllowed)?,
        None => allowed
            .iter()
            .find(|p| p.exists())
            .ok_or_else(|| ChooseError::Unusable("none of the allowed paths exists".into()))?,
    };
    check(path).map_err(ChooseError::Unusable)
}

/// Why no binary could be chosen.
#[derive(Debug)]
pub(crate) enum ChooseError {
    /// The requested path is not on the list.
    NotAllowed,
    /// The binary is missing or fails the ownership checks.
    Unusable(String),
}

/// The default list as paths.
pub(crate) fn default_paths() -> Vec<PathBuf> {
    OPENVPN_PATHS.iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn system_openvpn_passes() {
        if Path::new("/usr/sbin/openvpn").exists() {
            let b = check(Path::new("/usr/sbin/openvpn")).expect("system openvpn");
            assert_eq!(b.path, Path::new("/usr/sbin/openvpn"));
        }
    }

    #[test]
    fn writable_or_foreign_binaries_are_refused() {
        let dir = std::env::temp_dir().join(format!("bmr-bin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let f = dir.join("openvpn");
        std::fs::write(&f, b"#!/bin/true\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        // /tmp is world-writable, and the file too.
        assert!(check(&f).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(
            check(&f).is_err(),
            "a binary under a world-writable dir must be refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn requested_path_must_be_listed() {
        let allowed = default_paths();
        assert!(matches!(
            choose(Some("/tmp/openvpn"), &allowed),
            Err(ChooseError::NotAllowed)
        ));
        assert!(matches!(
            choose(Some("/usr/sbin/../sbin/openvpn"), &allowed),
            Err(ChooseError::NotAllowed)
        ));
    }
}
