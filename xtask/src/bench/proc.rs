//! Running one process inside the bench namespace: timed from just before the spawn to the
//! moment it is reaped, with its exit code and peak RSS, killed if it outlives its deadline
//! or the user presses Ctrl-C.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::lab::Inside;
use super::sys;

/// No single command of the bench may run longer than this.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What one run of a process did.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    /// Wall time from spawn to reap.
    pub elapsed: Duration,
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Peak resident set in KiB.
    pub maxrss_kb: u64,
    /// CPU time, user and system.
    pub cpu: Duration,
}

impl Ran {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` to completion, stdin and stdout discarded, stderr to `errfile`.
pub fn run(inside: &Inside, mut cmd: Command, errfile: &Path) -> Result<Ran, String> {
    inside.check()?;
    let err = File::create(errfile).map_err(|e| format!("create {}: {e}", errfile.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    let pid = child.id();
    let pidfd = sys::pidfd_open(pid).map_err(|e| format!("pidfd_open {pid}: {e}"))?;
    let mut killed = None;
    loop {
        if sys::wait_exit(&pidfd, 200).map_err(|e| format!("poll: {e}"))? {
            break;
        }
        if sys::interrupted() {
            killed = Some("interrupted (Ctrl-C)".to_string());
        } else if start.elapsed() > DEADLINE {
            killed = Some(format!("{cmd:?} ran longer than {DEADLINE:?}; killed"));
        }
        if killed.is_some() {
            sys::kill(&pidfd);
            break;
        }
    }
    let reaped = sys::reap(pid).map_err(|e| format!("wait4 {pid}: {e}"))?;
    let elapsed = start.elapsed();
    if let Some(why) = killed {
        return Err(why);
    }
    Ok(Ran {
        elapsed,
        code: reaped.code,
        maxrss_kb: reaped.maxrss_kb,
        cpu: reaped.cpu,
    })
}

/// Like [`run`] but fails unless the process exits 0, quoting its stderr.
pub fn run_ok(inside: &Inside, cmd: Command, errfile: &Path) -> Result<Ran, String> {
    let what = format!("{cmd:?}");
    let ran = run(inside, cmd, errfile)?;
    if ran.ok() {
        Ok(ran)
    } else {
        let stderr = std::fs::read_to_string(errfile).unwrap_or_default();
        let short: String = what.chars().take(200).collect();
        Err(format!("{short} exited {:?}: {}", ran.code, stderr.trim()))
    }
}

/// Runs `cmd` and returns its stdout (for setup, untimed); fails unless it exits 0.
pub fn output(inside: &Inside, mut cmd: Command) -> Result<String, String> {
    inside.check()?;
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if !out.status.success() {
        let short: String = format!("{cmd:?}").chars().take(200).collect();
        return Err(format!(
            "{short} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "output is not UTF-8".to_string())
}

/// What `program ARGS` asks of the kernel, traced with `strace -f -C -e write=all -e
/// read=all` (see [`super::trace`]). `None` when strace is missing, cannot trace here, or the
/// command failed.
pub fn trace(
    inside: &Inside,
    program: &str,
    args: &[String],
    dir: &Path,
) -> Option<super::trace::Counts> {
    let log = dir.join("strace-traffic.log");
    let mut cmd = inside.command("strace").ok()?;
    cmd.args(["-f", "-qq", "-C", "-e", "write=all", "-e", "read=all", "-o"])
        .arg(&log)
        .arg(program)
        .args(args);
    let ran = run(inside, cmd, &dir.join("strace.err")).ok()?;
    if !ran.ok() {
        return None;
    }
    let text = std::fs::read_to_string(&log).ok()?;
    Some(super::trace::parse(&text))
}

/// Processes started by `cmd` (itself included), counted with `strace -f -e trace=execve`.
/// `None` when strace is missing, cannot trace here, or the command failed.
pub fn count_execs(inside: &Inside, program: &str, args: &[String], dir: &Path) -> Option<usize> {
    let log = dir.join("strace.log");
    let mut cmd = inside.command("strace").ok()?;
    cmd.args(["-f", "-qq", "-e", "trace=execve", "-o"])
        .arg(&log)
        .arg(program)
        .args(args);
    let ran = run(inside, cmd, &dir.join("strace.err")).ok()?;
    if !ran.ok() {
        return None;
    }
    let text = std::fs::read_to_string(&log).ok()?;
    Some(
        text.lines()
            .filter(|l| l.contains("execve") && l.trim_end().ends_with("= 0"))
            .count(),
    )
}
