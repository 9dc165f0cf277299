//! Running the `bitmask-root` binary inside a namespace.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, CmdOutput, Running};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// Environment variable naming the binary under test.
pub const BIN_ENV: &str = "BITMASK_ROOT_BIN";
/// Environment variable naming (by inode) a network namespace the binary must refuse to
/// touch.
pub const REQUIRE_NETNS_ENV: &str = "BITMASK_ROOT_REQUIRE_NETNS";

/// The `bitmask-root` binary under test.
#[derive(Debug, Clone)]
pub struct BitmaskRoot {
    path: PathBuf,
}

impl BitmaskRoot {
    /// The binary named by `$BITMASK_ROOT_BIN`, else `<workspace>/target/debug/bitmask-root`
    /// (or under `$CARGO_TARGET_DIR`). Errors if it does not exist.
    pub fn from_env() -> Result<BitmaskRoot> {
        let path = match std::env::var_os(BIN_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| workspace_root().join("target"));
                target.join("debug").join("bitmask-root")
            }
        };
        Self::at(path)
    }

    /// The binary at `path`. Errors if it does not exist.
    pub fn at(path: impl Into<PathBuf>) -> Result<BitmaskRoot> {
        let path = path.into();
        if !path.is_file() {
            return Err(Error::new(format!(
                "bitmask-root binary not found at {} (build it with `cargo build`, or set {BIN_ENV})",
                path.display()
            )));
        }
        Ok(BitmaskRoot { path })
    }

    /// Path of the binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `ip netns exec <ns> <bin> ARGS` with `BITMASK_ROOT_REQUIRE_NETNS` set to the inode
    /// of this process's own network namespace (see [`protected_inode`]), after checking that
    /// `ns` is not the initial namespace. The binary then refuses to touch the namespace the
    /// tests run in.
    pub fn command<S: AsRef<OsStr>>(&self, ns: &Netns, args: &[S]) -> Result<Command> {
        self.command_wrapped(ns, &[], args)
    }

    /// Like [`BitmaskRoot::command`] with `wrapper` (e.g. `strace -f -o FILE`) run inside
    /// the namespace in front of the binary.
    pub fn command_wrapped<S: AsRef<OsStr>>(
        &self,
        ns: &Netns,
        wrapper: &[&str],
        args: &[S],
    ) -> Result<Command> {
        let protect = protected_inode()?;
        let mut c = ns.command(wrapper.first().map_or(self.path.as_os_str(), OsStr::new))?;
        if !wrapper.is_empty() {
            c.args(&wrapper[1..]).arg(&self.path);
        }
        c.args(args).env(REQUIRE_NETNS_ENV, protect.to_string());
        Ok(c)
    }

    /// SIGKILLs the `bitmask-root` process started by [`BitmaskRoot::spawn`] (itself, not
    /// its wrapper); returns whether it was found still running.
    pub fn kill(&self, running: &mut Running) -> bool {
        let is_bin = |pid: &u32| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == self.path)
        };
        // `ip netns exec` execs the binary in place; a wrapper would make it a descendant.
        let found = std::iter::once(running.pid())
            .chain(running.descendants())
            .find(is_bin);
        match found {
            Some(pid) => {
                let ok = crate::sys::sigkill(pid).is_ok();
                running.kill();
                ok
            }
            None => {
                running.kill();
                false
            }
        }
    }

    /// Runs the binary in `ns` and returns exit code and output.
    pub fn run<S: AsRef<OsStr>>(&self, ns: &Netns, args: &[S]) -> Result<CmdOutput> {
        cmd::run(self.command(ns, args)?, None, cmd::DEFAULT_TIMEOUT)
    }

    /// Starts the binary in `ns` in the background (e.g. to kill it at a chosen moment).
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: &Netns, args: &[S]) -> Result<Running> {
        Running::spawn(self.command(ns, args)?)
    }

    /// `[flags...] firewall start GW...`; fails unless it exits 0.
    pub fn start(&self, ns: &Netns, flags: &[&str], gateways: &[IpAddr]) -> Result<CmdOutput> {
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(["firewall".into(), "start".into()]);
        args.extend(gateways.iter().map(|g| g.to_string()));
        let out = self.run(ns, &args)?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::new(format!(
                "bitmask-root {} exited {:?}: {}",
                args.join(" "),
                out.code,
                out.stderr.trim()
            )))
        }
    }

    /// `firewall stop`; returns what it did.
    pub fn stop(&self, ns: &Netns) -> Result<CmdOutput> {
        self.run(ns, &["firewall", "stop"])
    }

    /// `[flags...] firewall isup`; returns the exit code.
    pub fn isup(&self, ns: &Netns, flags: &[&str]) -> Result<Option<i32>> {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["firewall", "isup"]);
        Ok(self.run(ns, &args)?.code)
    }
}

/// The inode of this process's own network namespace: the value given to the binary in
/// `BITMASK_ROOT_REQUIRE_NETNS`, so that it refuses to touch the namespace the tests run in
/// (the machine's).
pub fn protected_inode() -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| Error::new(format!("stat /proc/self/ns/net: {e}")))
}

/// The cargo workspace this crate belongs to.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
