//! Running external commands with a time bound and capturing what they printed.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// What a finished command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code; `None` when killed by a signal (or by the time bound).
    pub code: Option<i32>,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
    /// True when the command was killed because it exceeded its time bound.
    pub timed_out: bool,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Default time bound for a command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with optional standard input, killing it after `timeout`.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<CmdOutput> {
    let desc = format!("{cmd:?}");
    let short: String = desc.chars().take(300).collect();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context(|| format!("spawning {short}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .context(|| format!("writing stdin of {short}"))?;
    }
    wait(child_pipes(&mut child), child, start, timeout, &short)
}

type Pipes = (thread::JoinHandle<Vec<u8>>, thread::JoinHandle<Vec<u8>>);

fn child_pipes(child: &mut Child) -> Pipes {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let a = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let b = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    (a, b)
}

fn wait(
    pipes: Pipes,
    mut child: Child,
    start: Instant,
    timeout: Duration,
    desc: &str,
) -> Result<CmdOutput> {
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().context(|| format!("waiting for {desc}"))? {
            Some(s) => break s,
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                timed_out = true;
                break child.wait().context(|| format!("reaping {desc}"))?;
            }
            None => thread::sleep(Duration::from_micros(500)),
        }
    };
    let elapsed = start.elapsed();
    let stdout = pipes
        .0
        .join()
        .map_err(|_| Error::new("stdout reader panicked"))?;
    let stderr = pipes
        .1
        .join()
        .map_err(|_| Error::new("stderr reader panicked"))?;
    Ok(CmdOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
        elapsed,
    })
}

/// A command started in the background (see [`crate::BitmaskRoot::spawn`]), which can be
/// killed at a chosen moment and then collected. Dropping it kills and reaps the process.
pub struct Running {
    child: Option<Child>,
    pipes: Option<Pipes>,
    start: Instant,
    desc: String,
}

impl Running {
    /// Spawns `cmd` with its output captured.
    pub fn spawn(mut cmd: Command) -> Result<Running> {
        let desc: String = format!("{cmd:?}").chars().take(300).collect();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().context(|| format!("spawning {desc}"))?;
        let pipes = Some(child_pipes(&mut child));
        Ok(Running {
            child: Some(child),
            pipes,
            start,
            desc,
        })
    }

    /// The process id (0 once collected).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Process ids of all descendants (children, grandchildren, ...), from
    /// `/proc/PID/task/PID/children`.
    pub fn descendants(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut todo = vec![self.pid()];
        while let Some(p) = todo.pop() {
            if p == 0 {
                continue;
            }
            let kids =
                std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
        out
    }

    /// Sends SIGKILL (no effect if it already exited).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    /// Waits (at most `timeout`, then kills) and returns what it did.
    pub fn finish(mut self, timeout: Duration) -> Result<CmdOutput> {
        match (self.child.take(), self.pipes.take()) {
            (Some(child), Some(pipes)) => wait(pipes, child, self.start, timeout, &self.desc),
            _ => Err(Error::new("output already collected")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
