//! One command at a time per network namespace.
//!
//! Every command that changes or judges a firewall (`firewall start/stop/isup`, `fw-email
//! start/stop/isup`, and the library calls behind them) holds this lock for its whole run, so
//! two of them never interleave: a `start` never reads back a table that another `start`
//! replaced a moment later, and an `isup` never judges a table half-way between two starts.
//!
//! - **Per network namespace**: the lock is keyed by the namespace of the calling thread
//!   (the device and inode of `/proc/thread-self/ns/net`, a [`NamespaceKey`]), so commands in
//!   two namespaces never wait for each other.
//! - **Root only**: the lock files live in `/run/bitmask-root/lock` ([`RUN_DIR`],
//!   [`LOCK_DIR`]), a directory owned by root with mode 0700. A directory that is a symbolic
//!   link, belongs to someone else or is writable by others is refused, never used.
//! - **`flock(2)`**: the kernel releases the lock when its holder exits, also when it is
//!   killed with SIGKILL, so a dead command never blocks the next one.
//! - **Bounded wait**: a command waits at most [`WAIT`] and then fails with
//!   [`LockError::Busy`], having changed nothing.
//!
//! The lock is not reentrant: code that holds a [`NamespaceLock`] calls the `*_held`
//! functions of [`crate::nft::engine`] instead of taking it again.
//!
//! ```no_run
//! use bitmask_root::nft::lock::NamespaceLock;
//! # fn demo() -> Result<(), bitmask_root::nft::lock::LockError> {
//! let lock = NamespaceLock::acquire()?; // waits up to lock::WAIT
//! println!("holding {}", lock.path().display());
//! drop(lock); // released (also when the process dies)
//! # Ok(()) }
//! ```
//!
//! Other per-namespace state under `/run` (a control socket, say) follows the same rule with
//! [`NamespaceKey::file_name`] and [`run_subdir`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// bitmask-root's run directory. Owned by root and writable only by root; other users may
/// enter it (so that a later control socket can be reached).
pub const RUN_DIR: &str = "/run/bitmask-root";
/// The mode [`run_dir`] creates [`RUN_DIR`] with (the OpenVPN pid file lives there too).
pub const RUN_DIR_MODE: u32 = 0o755;
/// The subdirectory of [`RUN_DIR`] that holds the lock files.
pub const LOCK_DIR: &str = "lock";
/// The mode of the lock directory: root only.
pub const LOCK_DIR_MODE: u32 = 0o700;
/// How long a command waits for the lock before it gives up.
pub const WAIT: Duration = Duration::from_secs(5);
/// Where the network namespace of the calling thread is named.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";
/// The longest pause between two attempts while waiting.
const MAX_PAUSE: Duration = Duration::from_millis(10);

/// Why the lock could not be taken. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another command held the lock for longer than the wait.
    #[error("another bitmask-root command is changing the firewall of this network namespace; waited {} s for it to finish and changed nothing: run the command again once it is done", .waited.as_secs())]
    Busy {
        /// How long this command waited.
        waited: Duration,
    },
    /// The lock lives in a root-only directory.
    #[error("must be run as root: commands that change or check the firewall take a lock in {RUN_DIR} that only root may hold (try sudo or pkexec)")]
    NotRoot,
    /// The calling thread's network namespace could not be identified.
    #[error("could not identify this network namespace (stat {THREAD_NETNS}: {0})")]
    Namespace(#[source] io::Error),
    /// A directory of the lock is unsafe or could not be made.
    #[error("{} {problem}; it must be a directory owned by root that no one else may write to (mode {mode:04o} or stricter), not a symbolic link: remove it and run the command again", .path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The most permissive mode allowed.
        mode: u32,
    },
    /// The lock file could not be opened or locked.
    #[error("could not lock {} ({source})", .path.display())]
    File {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A lock taken in one namespace was used on a thread in another (a programming error
    /// of the caller).
    #[error("the firewall lock held is for network namespace {held}, but this thread is in {here}: take the lock on the thread that changes the firewall")]
    WrongNamespace {
        /// The namespace the lock is for.
        held: NamespaceKey,
        /// The calling thread's namespace.
        here: NamespaceKey,
    },
}

/// A network namespace, by the device and inode of its nsfs file: unique among the
/// namespaces alive at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceKey {
    /// The device number of the nsfs file.
    pub dev: u64,
    /// The inode number of the nsfs file (what `ip netns identify` and `lsns` show).
    pub ino: u64,
}

impl NamespaceKey {
    /// The network namespace of the calling thread.
    pub fn current() -> Result<NamespaceKey, LockError> {
        NamespaceKey::of(Path::new(THREAD_NETNS)).map_err(LockError::Namespace)
    }

    /// The network namespace that a namespace file names (`/proc/PID/ns/net`,
    /// `/run/netns/NAME`), links followed.
    pub fn of(path: &Path) -> io::Result<NamespaceKey> {
        let m = fs::metadata(path)?;
        Ok(NamespaceKey {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// A file name for this namespace: `net-DEV-INO` then `suffix` (such as `.lock` or
    /// `.sock`).
    pub fn file_name(&self, suffix: &str) -> String {
        format!("net-{}-{}{suffix}", self.dev, self.ino)
    }
}

impl fmt::Display for NamespaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}] (device {})", self.ino, self.dev)
    }
}

/// Makes sure `path` is a directory owned by the effective user, not a symbolic link, whose
/// permissions are within `mode` and writable by its owner only; creates it with `mode` when
/// it is missing. The parent must exist.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<(), LockError> {
    let fail = |problem: String| LockError::Dir {
        path: path.to_path_buf(),
        problem,
        mode,
    };
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(mode).create(path) {
                // The umask may have taken bits away; ours alone decide.
                Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|e| fail(format!("could not be given mode {mode:04o} ({e})")))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(format!("could not be created ({e})"))),
            }
        }
        Err(e) => return Err(fail(format!("could not be read ({e})"))),
    }
    let m = fs::symlink_metadata(path).map_err(|e| fail(format!("could not be read ({e})")))?;
    let me = sys::effective_uid();
    let perms = m.mode() & 0o7777;
    if m.file_type().is_symlink() {
        Err(fail("is a symbolic link".into()))
    } else if !m.is_dir() {
        Err(fail("is not a directory".into()))
    } else if m.uid() != me {
        Err(fail(format!("is owned by uid {}, not {me}", m.uid())))
    } else if perms & !mode != 0 || perms & 0o022 != 0 {
        Err(fail(format!("has mode {perms:04o}")))
    } else {
        Ok(())
    }
}

/// [`RUN_DIR`], created if missing and checked as [`ensure_dir`] says, with [`RUN_DIR_MODE`].
/// Needs root.
pub fn run_dir() -> Result<PathBuf, LockError> {
    if sys::effective_uid() != 0 {
        return Err(LockError::NotRoot);
    }
    let dir = PathBuf::from(RUN_DIR);
    ensure_dir(&dir, RUN_DIR_MODE)?;
    Ok(dir)
}

/// `RUN_DIR/name`, created with `mode` if missing and checked as [`ensure_dir`] says
/// (after [`run_dir`]). Needs root.
pub fn run_subdir(name: &str, mode: u32) -> Result<PathBuf, LockError> {
    let dir = run_dir()?.join(name);
    ensure_dir(&dir, mode)?;
    Ok(dir)
}

/// Where the lock of namespace `key` lives: `/run/bitmask-root/lock/net-DEV-INO.lock`.
pub fn lock_path(key: &NamespaceKey) -> PathBuf {
    Path::new(RUN_DIR)
        .join(LOCK_DIR)
        .join(key.file_name(".lock"))
}

/// The held lock of one network namespace. Dropping it releases the lock (and removes its
/// file); so does the kernel when the process dies.
#[derive(Debug)]
pub struct NamespaceLock {
    file: File,
    path: PathBuf,
    key: NamespaceKey,
}

impl NamespaceLock {
    /// Takes the lock of the calling thread's network namespace, waiting up to [`WAIT`]. The
    /// calling thread sleeps while it waits.
    pub fn acquire() -> Result<NamespaceLock, LockError> {
        NamespaceLock::acquire_within(WAIT)
    }

    /// Takes the lock of the calling thread's network namespace, waiting up to `wait`.
    pub fn acquire_within(wait: Duration) -> Result<NamespaceLock, LockError> {
        let key = NamespaceKey::current()?;
        let dir = run_subdir(LOCK_DIR, LOCK_DIR_MODE)?;
        NamespaceLock::acquire_in(&dir, key, wait)
    }

    /// Takes the lock of the calling thread's network namespace if it is free; `None` when
    /// another command holds it.
    pub fn try_acquire() -> Result<Option<NamespaceLock>, LockError> {
        match NamespaceLock::acquire_within(Duration::ZERO) {
            Ok(lock) => Ok(Some(lock)),
            Err(LockError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock of namespace `key` in directory `dir` (checked as [`ensure_dir`] says,
    /// with mode 0700), waiting up to `wait`. For tests and tools that keep their locks
    /// elsewhere; commands use [`NamespaceLock::acquire`].
    pub fn acquire_in(
        dir: &Path,
        key: NamespaceKey,
        wait: Duration,
    ) -> Result<NamespaceLock, LockError> {
        ensure_dir(dir, LOCK_DIR_MODE)?;
        let path = dir.join(key.file_name(".lock"));
        let file_error = |source| LockError::File {
            path: path.clone(),
            source,
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut replaced = 0;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(file_error)?;
            if sys::flock::try_lock_exclusive(&file).map_err(file_error)? {
                // The previous holder removes the file before it lets go: a lock taken on a
                // file that is no longer at `path` guards nothing, so try again.
                if same_file(&file, &path) {
                    return Ok(NamespaceLock { file, path, key });
                }
                replaced += 1;
                if replaced < 16 {
                    continue;
                }
            }
            drop(file);
            let waited = started.elapsed();
            if waited >= wait {
                return Err(LockError::Busy { waited });
            }
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The namespace this lock is for.
    pub fn key(&self) -> NamespaceKey {
        self.key
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails with [`LockError::WrongNamespace`] unless the calling thread is in the namespace
    /// this lock is for.
    pub fn ensure_current(&self) -> Result<(), LockError> {
        let here = NamespaceKey::current()?;
        if here == self.key {
            Ok(())
        } else {
            Err(LockError::WrongNamespace {
                held: self.key,
                here,
            })
        }
    }
}

impl Drop for NamespaceLock {
    fn drop(&mut self) {
        // Only the holder removes the file, and only while it still holds it; the lock itself
        // goes with the descriptor, right after.
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` (not followed) is the file open as `file`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "bmr-lock-{label}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir(&p).expect("mkdir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn key() -> NamespaceKey {
        NamespaceKey { dev: 4, ino: 4026 }
    }

    #[test]
    fn file_names_and_paths_carry_the_namespace() {
        let k = NamespaceKey {
            dev: 4,
            ino: 4026532840,
        };
        assert_eq!(k.file_name(".lock"), "net-4-4026532840.lock");
        assert_eq!(
            lock_path(&k),
            Path::new("/run/bitmask-root/lock/net-4-4026532840.lock")
        );
        let here = NamespaceKey::current().expect("this thread's namespace");
        assert_eq!(
            here,
            NamespaceKey::of(Path::new("/proc/self/ns/net")).expect("stat")
        );
    }

    #[test]
    fn one_holder_at_a_time_and_the_file_goes_with_the_last() {
        let tmp = TempDir::new("one");
        let dir = tmp.0.join("lock");
        let first = NamespaceLock::acquire_in(&dir, key(), Duration::ZERO).expect("free");
        assert!(first.path().exists());
        match NamespaceLock::acquire_in(&dir, key(), Duration::from_millis(30)) {
            Err(LockError::Busy { waited }) => assert!(waited >= Duration::from_millis(30)),
            other => panic!("a held lock must be busy: {other:?}"),
        }
        let other_ns = NamespaceKey { ino: 4027, ..key() };
        let other = NamespaceLock::acquire_in(&dir, other_ns, Duration::ZERO)
            .expect("another namespace has its own lock");
        drop(first);
        assert!(!dir.join(key().file_name(".lock")).exists(), "file removed");
        let again = NamespaceLock::acquire_in(&dir, key(), Duration::ZERO).expect("released");
        drop((again, other));
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0, "no files left");
    }

    #[test]
    fn waiters_take_turns() {
        let tmp = TempDir::new("turns");
        let dir = tmp.0.join("lock");
        let inside = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _lock = NamespaceLock::acquire_in(&dir, key(), Duration::from_secs(60))
                            .expect("lock");
                        let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(n, 0, "two holders at once");
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
    }

    #[test]
    fn unsafe_directories_are_refused() {
        let tmp = TempDir::new("unsafe");
        let open = tmp.0.join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = NamespaceLock::acquire_in(&open, key(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("has mode 0755"), "{e}");
        let link = tmp.0.join("link");
        std::os::unix::fs::symlink(&open, &link).expect("symlink");
        let e = NamespaceLock::acquire_in(&link, key(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let file = tmp.0.join("file");
        fs::write(&file, b"").expect("file");
        let e = NamespaceLock::acquire_in(&file, key(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        // Someone else's directory: as root, one given away; otherwise one of root's.
        let foreign = if sys::effective_uid() == 0 {
            let d = tmp.0.join("foreign");
            fs::create_dir(&d).expect("mkdir");
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).expect("chmod");
            std::os::unix::fs::chown(&d, Some(65534), None).expect("chown");
            d
        } else {
            PathBuf::from("/")
        };
        let e = ensure_dir(&foreign, 0o755).unwrap_err();
        assert!(e.to_string().contains("is owned by uid"), "{e}");
    }

    #[test]
    fn a_created_directory_gets_its_mode_whatever_the_umask() {
        let tmp = TempDir::new("mode");
        let d = tmp.0.join("sub");
        ensure_dir(&d, 0o700).expect("create");
        let m = fs::symlink_metadata(&d).expect("stat");
        assert_eq!(m.mode() & 0o7777, 0o700);
        ensure_dir(&d, 0o755).expect("a stricter directory is fine");
    }

    #[test]
    fn a_lock_belongs_to_its_namespace() {
        let tmp = TempDir::new("ns");
        let dir = tmp.0.join("lock");
        let here = NamespaceKey::current().expect("key");
        let lock = NamespaceLock::acquire_in(&dir, here, Duration::ZERO).expect("lock");
        lock.ensure_current().expect("same namespace");
        let elsewhere = NamespaceLock::acquire_in(&dir, key(), Duration::ZERO).expect("lock");
        assert!(matches!(
            elsewhere.ensure_current(),
            Err(LockError::WrongNamespace { .. })
        ));
    }
}
