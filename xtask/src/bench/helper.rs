//! The client side of `examples/bench_lib.rs`, the release-built helper that times what runs
//! without a process start (library calls, the kernel floor, the UDP flood). It is started
//! from the thread that entered the bench namespace, so it lives there from birth.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

use super::lab::Inside;

/// A running helper; killed (by its own handle, never by name) when dropped.
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One answer: `key=value` pairs.
#[derive(Debug, Default)]
pub struct Answer(BTreeMap<String, String>);

impl Answer {
    /// A numeric field.
    pub fn num(&self, key: &str) -> Result<u64, String> {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("helper answer lacks {key}: {:?}", self.0))
    }

    /// The `ns=` field as a duration.
    pub fn elapsed(&self) -> Result<Duration, String> {
        self.num("ns").map(Duration::from_nanos)
    }

    /// A text field.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl Helper {
    /// Starts the helper binary inside the namespace.
    pub fn start(inside: &Inside, program: &Path) -> Result<Helper, String> {
        let mut cmd = inside.command(program)?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", program.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("helper has no pipes".into());
        };
        Ok(Helper {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Sends one command and reads its answer.
    pub fn ask(&mut self, inside: &Inside, command: &str) -> Result<Answer, String> {
        inside.check()?;
        writeln!(self.stdin, "{command}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("helper: {command}: {e}"))?;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("helper: {command}: {e}"))?;
        if n == 0 {
            return Err(format!("helper ended during {command:?}"));
        }
        let line = line.trim_end();
        let Some(rest) = line.strip_prefix("ok") else {
            return Err(format!(
                "helper: {command}: {}",
                line.trim_start_matches("err ")
            ));
        };
        let map = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Answer(map))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
