//! A named network namespace owned by the harness: created on construction, deleted on drop
//! (also during a panic), and checked before anything runs in it never to be the machine's
//! own namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::cmd::{self, CmdOutput, Running};
use crate::error::{Context, Error, Result};
use crate::{names, sys};

/// A network namespace created by the harness (`/run/netns/<name>`).
///
/// Dropping it runs `ip netns del`. Threads that entered it keep the kernel object alive
/// until they end, but the name disappears at once.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    id: (u64, u64),
}

impl Netns {
    /// Creates a new namespace named `bmr-<pid>-<n>-<role>` with `lo` up and IPv6
    /// duplicate address detection off (so addresses are usable at once).
    pub fn create(role: &str) -> Result<Netns> {
        let name = names::unique(role);
        let out = cmd::run(ip_cmd(&["netns", "add", &name]), None, cmd::DEFAULT_TIMEOUT)?;
        if !out.success() {
            return Err(Error::new(format!(
                "ip netns add {name} failed: {}",
                out.stderr.trim()
            )));
        }
        let path = PathBuf::from(format!("/run/netns/{name}"));
        let id = sys::ns_id(&path).context(|| format!("stat {}", path.display()));
        // From here on, Drop removes the namespace whatever happens next.
        let ns = Netns {
            name,
            path,
            id: id.clone().unwrap_or((0, 0)),
        };
        id?;
        ns.ensure_isolated()?;
        ns.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as used by `ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Errors unless this namespace exists and is not the initial (machine's) namespace.
    /// Called before anything is run inside it.
    pub fn ensure_isolated(&self) -> Result<()> {
        let now = ensure_not_initial(&self.path)?;
        if now != self.id {
            return Err(Error::new(format!(
                "refusing: {} no longer is the namespace the harness created",
                self.name
            )));
        }
        Ok(())
    }

    /// A `Command` for `ip netns exec <name> <program>`, after the isolation check.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        self.ensure_isolated()?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        Ok(c)
    }

    /// Runs `program args` inside the namespace (via `ip netns exec`) and returns what it did,
    /// whatever its exit code. Killed after [`cmd::DEFAULT_TIMEOUT`].
    pub fn exec<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Result<CmdOutput> {
        let mut c = self.command(program)?;
        c.args(args);
        cmd::run(c, None, cmd::DEFAULT_TIMEOUT)
    }

    /// Like [`Netns::exec`] but fails unless the command exits 0; returns its stdout.
    pub fn exec_ok<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Result<String> {
        let out = self.exec(program, args)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(Error::new(format!(
                "{program} in {} exited {:?}: {}",
                self.name,
                out.code,
                out.stderr.trim()
            )))
        }
    }

    /// Starts `program args` inside the namespace in the background.
    pub fn spawn_command<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: &str,
        args: &[S],
    ) -> Result<Running> {
        let mut c = self.command(program)?;
        c.args(args);
        Running::spawn(c)
    }

    /// Runs `ip -n <name> ARGS`; fails unless it exits 0; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        self.ensure_isolated()?;
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        let out = cmd::run(ip_cmd(&full), None, cmd::DEFAULT_TIMEOUT)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(Error::new(format!(
                "ip {} failed: {}",
                full.join(" "),
                out.stderr.trim()
            )))
        }
    }

    /// Runs several `ip` commands (one per line, without the leading `ip`) in one
    /// `ip -n <name> -batch -` process; fails on the first failing line.
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.ensure_isolated()?;
        let script = lines.join("\n") + "\n";
        let out = cmd::run(
            ip_cmd(&["-n", &self.name, "-batch", "-"]),
            Some(script.as_bytes()),
            cmd::DEFAULT_TIMEOUT,
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::new(format!(
                "ip batch in {} failed: {}\nscript:\n{script}",
                self.name,
                out.stderr.trim()
            )))
        }
    }

    /// Sets sysctls inside this namespace only (`ip netns exec <name> sysctl -w k=v ...`).
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let args: Vec<String> = std::iter::once("-qw".to_string())
            .chain(settings.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        self.exec_ok("sysctl", &args).map(|_| ())
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    /// A panic inside `f` is propagated to the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.ensure_isolated()?;
        let path = self.path.clone();
        let name = self.name.clone();
        thread::scope(|s| {
            let h = s.spawn(move || -> Result<T> {
                sys::enter_netns(&path).context(|| format!("entering {name}"))?;
                Ok(f())
            });
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a background thread that has entered this namespace. Entering is
    /// checked before this returns.
    pub fn spawn<F, T>(&self, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.ensure_isolated()?;
        let path = self.path.clone();
        let name = self.name.clone();
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(format!("ns-{}", self.name))
            .spawn(move || {
                let entered = sys::enter_netns(&path).context(|| format!("entering {name}"));
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                if ok {
                    Some(f())
                } else {
                    None
                }
            })
            .context(|| "spawning a thread".to_string())?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(NsThread { handle }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err(Error::new(format!(
                "thread for {} did not report",
                self.name
            ))),
        }
    }

    /// Whether this namespace's name still exists under /run/netns.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.path.exists() {
            return;
        }
        match cmd::run(
            ip_cmd(&["netns", "del", &self.name]),
            None,
            cmd::DEFAULT_TIMEOUT,
        ) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!(
                "netns-tests: ip netns del {} failed: {}",
                self.name,
                out.stderr.trim()
            ),
            Err(e) => eprintln!("netns-tests: ip netns del {}: {e}", self.name),
        }
    }
}

/// A thread running inside a namespace (see [`Netns::spawn`]).
#[derive(Debug)]
pub struct NsThread<T> {
    handle: thread::JoinHandle<Option<T>>,
}

impl<T> NsThread<T> {
    /// Waits for the thread; propagates its panic.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::new("namespace thread did not enter its namespace")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Errors if the namespace file at `path` (e.g. `/proc/<pid>/ns/net` or `/run/netns/NAME`)
/// is missing or is the machine's initial network namespace: that of PID 1 (when readable),
/// this process's own, or one with the kernel's fixed initial-namespace inode. Returns the
/// namespace's (device, inode) otherwise.
pub fn ensure_not_initial(path: &Path) -> Result<(u64, u64)> {
    let now = sys::ns_id(path).context(|| format!("namespace {} is gone", path.display()))?;
    if sys::forbidden(now).context(|| "identifying the initial namespace".to_string())? {
        return Err(Error::new(format!(
            "refusing: {} is the initial network namespace",
            path.display()
        )));
    }
    Ok(now)
}

fn ip_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(args);
    c
}
