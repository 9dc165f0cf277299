//! A `bitmask-root firewall guard` process under test, its log read line by line as it runs.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bitmask::BitmaskRoot;
use crate::error::{Context, Error, Result};
use crate::netns::Netns;

/// The environment variable that makes the guard watch instead of owning its table.
pub const GUARD_MODE_ENV: &str = "BITMASK_ROOT_GUARD_MODE";

/// A running guard. Dropping it ends it with SIGTERM (the guard removes its control socket
/// and leaves its table, which goes with the test's namespace), SIGKILL after 2 s, and reaps
/// it. Use [`GuardProcess::signal`] with `SIGKILL` to test a crash.
pub struct GuardProcess {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

impl BitmaskRoot {
    /// Starts `[flags...] firewall guard GW...` in `ns` with `env` added, and waits (up to
    /// 10 s) for its `started:` line. Fails with the guard's output if it does not start.
    pub fn guard(
        &self,
        ns: &Netns,
        flags: &[&str],
        gateways: &[IpAddr],
        env: &[(&str, &str)],
    ) -> Result<GuardProcess> {
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(["firewall".into(), "guard".into()]);
        args.extend(gateways.iter().map(|g| g.to_string()));
        let mut cmd = self.command(ns, &args)?;
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context(|| "spawning the guard".to_string())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().map(|o| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(o).lines().map_while(|l| l.ok()) {
                    if let Ok(mut v) = lines.lock() {
                        v.push(line);
                    }
                }
            })
        });
        let err = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let mut g = GuardProcess {
            child: Some(child),
            lines,
            stdout: out,
            stderr: err,
        };
        if g.wait_for(|l| l.contains("guard: started:"), Duration::from_secs(10))
            .is_none()
        {
            let (code, stderr) = g.finish(Duration::from_secs(2))?;
            return Err(Error::new(format!(
                "the guard did not start (exit {code:?}): {}; log: {:?}",
                stderr.trim(),
                g.lines()
            )));
        }
        Ok(g)
    }
}

impl GuardProcess {
    /// Its process id (`ip netns exec` execs the binary in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Every line it printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// How many lines so far match `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    /// Waits (at most `timeout`) for a line matching `pred`, printed before or during the
    /// wait; returns it.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `timeout`) until `n` lines match `pred`; returns how many do.
    pub fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let c = self.count(&pred);
            if c >= n || Instant::now() >= end {
                return c;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` (`libc::SIGTERM`, `libc::SIGKILL`, ...).
    pub fn signal(&self, sig: i32) -> Result<()> {
        crate::sys::signal(self.pid(), sig).map_err(|e| Error::new(format!("kill: {e}")))
    }

    /// Waits (at most `timeout`, then kills) for it to exit; returns its exit code (`None`
    /// when killed by a signal) and its stderr.
    pub fn finish(&mut self, timeout: Duration) -> Result<(Option<i32>, String)> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::new("the guard was already collected"));
        };
        let end = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let _ = child.kill();
                    break child.wait().context(|| "reaping the guard".to_string())?;
                }
                Err(e) => return Err(Error::new(format!("waiting for the guard: {e}"))),
            }
        };
        if let Some(t) = self.stdout.take() {
            let _ = t.join();
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Ok((status.code(), stderr))
    }
}

impl Drop for GuardProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal(libc::SIGTERM);
            let _ = self.finish(Duration::from_secs(2));
        }
    }
}
