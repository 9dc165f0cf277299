//! The guard's control socket: how `firewall start`, `block`, `stop` and `isup` reach a running
//! guard.
//!
//! One guard per network namespace. Its socket is
//! `/run/bitmask-root/guard/net-DEV-INO.sock`, where DEV and INO identify the network
//! namespace as the command lock does ([`NamespaceKey::current`],
//! [`NamespaceKey::file_name`]), so guards in different namespaces never meet. The directory
//! is made and checked by the lock module's [`lock::run_subdir`] (root's, mode 0700, not a
//! symbolic link, writable by nobody else), the socket is 0600, and both ends check the
//! other's credentials (`SO_PEERCRED`): only root talks to a guard, and a client talks only to
//! a guard run by root.
//!
//! Nothing is trusted because it exists. A guard holds an exclusive `flock` on
//! `net-DEV-INO.lock` in that directory for its whole life (the kernel releases it when the
//! process ends, however it ends). This is not the command lock ([`crate::nft::lock`]), which
//! the guard takes only around each of its transactions. A socket that refuses connections
//! while the guard's lock is free was left by a guard that died: it is removed and ignored.
//! There is no pid file: a client learns the guard's pid from the connection itself.
//!
//! The protocol is one request line and one answer line per connection: `status`, `stop`, or
//! `start RECORD<TAB>GATEWAY ...` (a blocking policy's record says `mode block` and has no
//! gateway); the answer is `ok ...` or `err CODE MESSAGE`.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{GuardError, GuardHandle};
use crate::firewall::plan;
use crate::firewall::policy::{self, Policy};
use crate::nft::lock::{self, NamespaceKey};

/// The subdirectory of [`lock::RUN_DIR`] that holds the control sockets and the guards' locks.
pub const GUARD_SUBDIR: &str = "guard";
/// Its mode: root only.
pub const GUARD_DIR_MODE: u32 = 0o700;
/// The directory of the control sockets: `/run/bitmask-root/guard`.
pub const GUARD_DIR: &str = "/run/bitmask-root/guard";
/// The longest request accepted (a policy with the most gateways fits).
const MAX_REQUEST: u64 = 4 << 20;
/// How long either end waits for the other's line.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new guard waits for a client's brief hold on the guard's lock.
const LOCK_WAIT: Duration = Duration::from_secs(1);
/// How long a client waits for a guard that holds its lock but does not answer yet (one
/// that is starting, or ending).
const ANSWER_WAIT: Duration = Duration::from_secs(5);

struct Paths {
    socket: PathBuf,
    lock: PathBuf,
}

/// The paths for the calling thread's network namespace, in `dir`.
fn paths_in(dir: PathBuf) -> Result<Paths, GuardError> {
    let key = NamespaceKey::current()?;
    Ok(Paths {
        socket: dir.join(key.file_name(".sock")),
        lock: dir.join(key.file_name(".lock")),
    })
}

fn control_err(path: &Path, reason: impl Into<String>) -> GuardError {
    GuardError::Control {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Opens (creating it, mode 0600, when `create`) a lock file; `None` when it does not exist
/// and `create` is false.
fn open_lock(path: &Path, create: bool) -> Result<Option<File>, GuardError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(control_err(path, e.to_string())),
    }
}

/// The listening end, held by the guard's process.
pub struct ControlServer {
    listener: UnixListener,
    socket: PathBuf,
    ino: u64,
    _lock: File,
}

impl ControlServer {
    /// Takes this namespace's guard lock (failing with [`GuardError::AlreadyRunning`] when
    /// another guard holds it), removes a socket left by a dead guard and listens. Call it
    /// before starting the guard: a second guard then never touches the table. Needs a tokio
    /// runtime.
    pub async fn bind() -> Result<ControlServer, GuardError> {
        let p = paths_in(lock::run_subdir(GUARD_SUBDIR, GUARD_DIR_MODE)?)?;
        let lock = open_lock(&p.lock, true)?
            .ok_or_else(|| control_err(&p.lock, "could not be created"))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match crate::sys::flock::try_lock_exclusive(&lock) {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(false) => {
                    let pid = match UnixStream::connect(&p.socket).await {
                        Ok(s) => s.peer_cred().ok().and_then(|c| c.pid()).map(|p| p as u32),
                        Err(_) => None,
                    };
                    return Err(GuardError::AlreadyRunning { pid });
                }
                Err(e) => return Err(control_err(&p.lock, e.to_string())),
            }
        }
        // The lock was free: any socket there belongs to a guard that is gone.
        match std::fs::remove_file(&p.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(control_err(&p.socket, e.to_string())),
        }
        let listener =
            UnixListener::bind(&p.socket).map_err(|e| control_err(&p.socket, e.to_string()))?;
        std::fs::set_permissions(&p.socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| control_err(&p.socket, e.to_string()))?;
        let ino = std::fs::symlink_metadata(&p.socket)
            .map_err(|e| control_err(&p.socket, e.to_string()))?
            .ino();
        Ok(ControlServer {
            listener,
            socket: p.socket,
            ino,
            _lock: lock,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.socket
    }

    /// Answers requests, one connection at a time, for `guard`. Returns after it served a
    /// `stop` (the guard has then removed the table and ended). Dropping the future (or the
    /// server) removes the socket.
    pub async fn serve(self, guard: GuardHandle) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if answer(stream, &guard).await {
                return;
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Only our own socket: never one a later guard bound at the same path.
        if std::fs::symlink_metadata(&self.socket).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Status,
    Stop,
    Start(Policy),
}

fn encode_start(p: &Policy) -> String {
    let gws: Vec<String> = p.gateways().iter().map(|g| g.to_string()).collect();
    format!("start {}\t{}", plan::record(p), gws.join(" "))
}

fn parse_request(line: &str) -> Result<Request, String> {
    match line {
        "status" => return Ok(Request::Status),
        "stop" => return Ok(Request::Stop),
        _ => {}
    }
    let rest = line.strip_prefix("start ").ok_or_else(|| {
        format!(
            "unknown request {:?}",
            line.chars().take(40).collect::<String>()
        )
    })?;
    let (record, gws) = rest
        .split_once('\t')
        .ok_or("a start request needs a record and gateways")?;
    let builder = plan::parse_record(record).ok_or("malformed policy record")?;
    let gateways = gws
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(policy::parse_gateway)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    builder
        .gateways(gateways)
        .build()
        .map(Request::Start)
        .map_err(|e| e.to_string())
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Serves one connection; true when it was a successful `stop`.
async fn answer(stream: UnixStream, guard: &GuardHandle) -> bool {
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let (rd, mut wr) = stream.into_split();
    let (reply, stopped) = if uid != 0 {
        (
            format!("err 1 only root may control the guard (you are uid {uid})"),
            false,
        )
    } else {
        let mut line = String::new();
        let mut reader = BufReader::new(rd.take(MAX_REQUEST));
        let read = reader.read_line(&mut line);
        match tokio::time::timeout(IO_TIMEOUT, read).await {
            Ok(Ok(_)) => match parse_request(line.trim_end_matches('\n')) {
                Ok(Request::Status) => (
                    format!(
                        "ok pid={} mode={} port={}",
                        std::process::id(),
                        guard.mode().as_str(),
                        guard.port()
                    ),
                    false,
                ),
                Ok(Request::Start(policy)) => match guard.update(policy).await {
                    Ok(a) => (format!("ok rules={}", a.fingerprint), false),
                    Err(e) => (
                        format!("err {} {}", e.exit_code(), one_line(&e.to_string())),
                        false,
                    ),
                },
                Ok(Request::Stop) => match guard.stop().await {
                    Ok(removed) => (format!("ok removed={removed}"), true),
                    Err(e) => (
                        format!("err {} {}", e.exit_code(), one_line(&e.to_string())),
                        false,
                    ),
                },
                Err(e) => (format!("err 2 malformed request: {}", one_line(&e)), false),
            },
            _ => return false,
        }
    };
    let write = async {
        wr.write_all(reply.as_bytes()).await?;
        wr.write_all(b"\n").await?;
        wr.flush().await
    };
    let _ = tokio::time::timeout(IO_TIMEOUT, write).await;
    stopped
}

/// What a guard says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardStatus {
    /// Its process id.
    pub pid: u32,
    /// `owner` or `watch` (see [`super::Mode`]).
    pub mode: String,
    /// The netlink port id of the socket that owns the table.
    pub port: u32,
}

/// A connection to this namespace's running guard.
pub struct ControlClient {
    stream: UnixStream,
    pid: u32,
    path: PathBuf,
}

/// What one look for this namespace's guard found.
pub enum Lookup {
    /// A guard answers: the connection to it.
    Running(ControlClient),
    /// No guard runs (a socket left by a guard that died was removed, unless only probing).
    Absent,
    /// A guard holds its lock but its socket does not answer (yet): it is starting or ending.
    Unanswered,
}

/// Connects to the guard of the calling thread's network namespace. `Ok(None)` when none
/// runs; a socket left by a guard that died is removed on the way. A guard that is starting
/// or ending is waited for (a few seconds). Needs a tokio runtime.
pub async fn connect() -> Result<Option<ControlClient>, GuardError> {
    connect_with(true).await
}

/// Like [`connect`], but leaves a stale socket where it is (for `--dry-run`, which changes
/// nothing).
pub async fn probe() -> Result<Option<ControlClient>, GuardError> {
    connect_with(false).await
}

/// The error when a guard keeps its lock but never answers.
pub fn unanswered() -> GuardError {
    let path = Path::new(GUARD_DIR).to_path_buf();
    control_err(
        &path,
        "a guard holds this namespace's guard lock but does not answer; try again",
    )
}

async fn connect_with(cleanup: bool) -> Result<Option<ControlClient>, GuardError> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        match look(cleanup).await? {
            Lookup::Running(c) => return Ok(Some(c)),
            Lookup::Absent => return Ok(None),
            Lookup::Unanswered if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Lookup::Unanswered => return Err(unanswered()),
        }
    }
}

/// The guard directory when it exists, checked as the lock module checks its directories
/// (never created here: a client that finds none knows that no guard runs).
fn existing_guard_dir() -> Result<Option<PathBuf>, GuardError> {
    let dir = Path::new(lock::RUN_DIR).join(GUARD_SUBDIR);
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(control_err(&dir, e.to_string())),
    }
    lock::ensure_dir(Path::new(lock::RUN_DIR), lock::RUN_DIR_MODE)?;
    lock::ensure_dir(&dir, GUARD_DIR_MODE)?;
    Ok(Some(dir))
}

/// Looks once, without waiting, for the guard of the calling thread's network namespace;
/// with `cleanup`, removes a socket that a dead guard left. Needs a tokio runtime.
pub async fn look(cleanup: bool) -> Result<Lookup, GuardError> {
    let Some(dir) = existing_guard_dir()? else {
        return Ok(Lookup::Absent);
    };
    let p = paths_in(dir)?;
    match UnixStream::connect(&p.socket).await {
        Ok(stream) => {
            let cred = stream
                .peer_cred()
                .map_err(|e| control_err(&p.socket, e.to_string()))?;
            if cred.uid() != 0 {
                return Err(control_err(
                    &p.socket,
                    format!(
                        "answered by uid {}, not root: refusing to talk to it",
                        cred.uid()
                    ),
                ));
            }
            Ok(Lookup::Running(ControlClient {
                stream,
                pid: cred.pid().map_or(0, |p| p as u32),
                path: p.socket,
            }))
        }
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ECONNREFUSED) =>
        {
            let refused = e.raw_os_error() == Some(libc::ECONNREFUSED);
            // No lock file: no guard ever ran in this namespace. (Clients never create one,
            // and guards never remove theirs: unlinking a lock file that another process may
            // have open would let two of them hold "the" lock.)
            let Some(lock) = open_lock(&p.lock, false)? else {
                if cleanup && refused {
                    let _ = std::fs::remove_file(&p.socket);
                }
                return Ok(Lookup::Absent);
            };
            match crate::sys::flock::try_lock_exclusive(&lock) {
                Ok(true) => {
                    // No guard lives here: whatever socket is there is stale.
                    if cleanup && refused {
                        let _ = std::fs::remove_file(&p.socket);
                    }
                    Ok(Lookup::Absent)
                }
                Ok(false) => Ok(Lookup::Unanswered),
                Err(e) => Err(control_err(&p.lock, e.to_string())),
            }
        }
        Err(e) => Err(control_err(&p.socket, e.to_string())),
    }
}

impl ControlClient {
    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request; returns the text after `ok `.
    async fn request(self, line: &str) -> Result<String, GuardError> {
        let path = self.path.clone();
        let pid = self.pid;
        let exchange = async move {
            let (rd, mut wr) = self.stream.into_split();
            wr.write_all(line.as_bytes()).await?;
            wr.write_all(b"\n").await?;
            wr.flush().await?;
            let mut reply = String::new();
            BufReader::new(rd.take(MAX_REQUEST))
                .read_line(&mut reply)
                .await?;
            Ok::<_, io::Error>(reply)
        };
        let reply = match tokio::time::timeout(IO_TIMEOUT, exchange).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(control_err(&path, e.to_string())),
            Err(_) => return Err(control_err(&path, "the guard did not answer in time")),
        };
        let reply = reply.trim_end_matches('\n');
        if let Some(ok) = reply.strip_prefix("ok") {
            return Ok(ok.trim_start().to_string());
        }
        if let Some(err) = reply.strip_prefix("err ") {
            let (code, message) = err.split_once(' ').unwrap_or(("1", err));
            return Err(GuardError::Refused {
                code: code.parse().unwrap_or(1),
                message: format!("the guard (pid {pid}) refused: {message}"),
            });
        }
        Err(control_err(
            &path,
            if reply.is_empty() {
                "the guard closed the connection without answering (it is ending?)".to_string()
            } else {
                format!("unexpected answer {reply:?}")
            },
        ))
    }

    /// Asks the guard what it is.
    pub async fn status(self) -> Result<GuardStatus, GuardError> {
        let path = self.path.clone();
        let text = self.request("status").await?;
        let field = |k: &str| {
            text.split(' ')
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        let num = |k: &str| field(k).and_then(|v| v.parse().ok());
        match (num("pid"), field("mode"), num("port")) {
            (Some(pid), Some(mode), Some(port)) => Ok(GuardStatus { pid, mode, port }),
            _ => Err(control_err(&path, format!("unexpected status {text:?}"))),
        }
    }

    /// Hands the guard a new policy; returns the fingerprint of the rules it applied.
    pub async fn start(self, policy: &Policy) -> Result<String, GuardError> {
        let text = self.request(&encode_start(policy)).await?;
        Ok(text.strip_prefix("rules=").unwrap_or(&text).to_string())
    }

    /// Asks the guard to remove the table and end; returns whether the table was there.
    pub async fn stop(self) -> Result<bool, GuardError> {
        Ok(self.request("stop").await? == "removed=true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_requests_round_trip() {
        let p = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .gateway("2001:db8::7".parse().unwrap())
            .lan(crate::policy::LanMode::Off)
            .tunnel("wg0".parse().unwrap())
            .debug(true)
            .build()
            .unwrap();
        assert_eq!(parse_request(&encode_start(&p)), Ok(Request::Start(p)));
        // A blocking policy (firewall block, or firewall guard without gateways) has none.
        let block = Policy::builder()
            .mode(crate::policy::Mode::Block)
            .forward(false)
            .build()
            .unwrap();
        let line = encode_start(&block);
        assert!(line.ends_with('\t'), "{line:?}");
        assert_eq!(parse_request(&line), Ok(Request::Start(block)));
        assert!(
            parse_request(&format!("{line}198.51.100.7")).is_err(),
            "a blocking policy takes no gateway"
        );
        assert_eq!(parse_request("status"), Ok(Request::Status));
        assert_eq!(parse_request("stop"), Ok(Request::Stop));
        for bad in [
            "",
            "stopp",
            "start x",
            "start bitmask-root firewall; profile default\t198.51.100.7",
            "start bitmask-root firewall; profile default; lan private; resolver 10.42.0.1; tunnel tun*; debug off\t127.1",
            "start bitmask-root firewall; profile default; lan private; resolver 10.42.0.1; tunnel tun*; debug off\t",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_socket_is_named_for_this_namespace_as_the_command_lock_is() {
        let p = paths_in(PathBuf::from(GUARD_DIR)).unwrap();
        let key = NamespaceKey::current().unwrap();
        assert_eq!(p.socket, Path::new(GUARD_DIR).join(key.file_name(".sock")));
        assert_eq!(p.lock, Path::new(GUARD_DIR).join(key.file_name(".lock")));
        assert_eq!(
            Path::new(lock::RUN_DIR).join(GUARD_SUBDIR),
            Path::new(GUARD_DIR)
        );
        assert_ne!(p.lock, lock::lock_path(&key), "not the command lock");
    }
}
