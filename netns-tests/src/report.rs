//! Per-case reporting for the leak matrix: each case appends one JSON line (case number,
//! name, expectation, result, what was seen, the checks made) to the file named by
//! `$LEAK_REPORT_JSONL`, which `cargo xtask netns-test` turns into `docs/leak-matrix.md`.
//! A case that panics is reported as `FAIL`, with the check that failed.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Once;
use std::time::Instant;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}
static HOOK: Once = Once::new();

/// Installs (once) a panic hook that remembers each thread's last panic message, so a
/// failing case can say why, then runs the previous hook.
fn install_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "panic".into()),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            prev(info)
        }));
    });
}

/// Environment variable naming the JSON-lines report file.
pub const REPORT_ENV: &str = "LEAK_REPORT_JSONL";

/// One leak-matrix case being run. Create it at the start of a test, record what was seen
/// and check expectations through it, and call [`Case::pass`] at the end.
#[derive(Debug)]
pub struct Case {
    id: u32,
    name: String,
    expectation: String,
    seen: Vec<String>,
    checks: Vec<String>,
    start: Instant,
    passed: bool,
}

impl Case {
    /// Starts case `id` named `name` with its expectation in plain words.
    pub fn begin(id: u32, name: &str, expectation: &str) -> Case {
        install_hook();
        LAST_PANIC.with(|p| p.borrow_mut().take());
        Case {
            id,
            name: name.to_string(),
            expectation: expectation.to_string(),
            seen: Vec::new(),
            checks: Vec::new(),
            start: Instant::now(),
            passed: false,
        }
    }

    /// Records an observation (e.g. `udp 203.0.113.10:9 arrivals=0`).
    pub fn seen(&mut self, what: impl Into<String>) {
        let w = what.into();
        eprintln!("case {}: seen {w}", self.id);
        self.seen.push(w);
    }

    /// Records a check; panics (failing the test and the case) if `ok` is false.
    #[track_caller]
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        let w = what.into();
        if ok {
            self.checks.push(format!("ok: {w}"));
        } else {
            self.checks.push(format!("FAILED: {w}"));
            panic!("case {} ({}): check failed: {w}", self.id, self.name);
        }
    }

    /// Records an observation and checks `actual == expected`.
    #[track_caller]
    pub fn expect_count(&mut self, what: &str, actual: usize, expected: usize) {
        self.seen(format!("{what}: {actual}"));
        self.check(
            actual == expected,
            format!("{what}: {actual} seen, expected {expected}"),
        );
    }

    /// Records an observation and checks `actual >= min`.
    #[track_caller]
    pub fn expect_at_least(&mut self, what: &str, actual: usize, min: usize) {
        self.seen(format!("{what}: {actual}"));
        self.check(
            actual >= min,
            format!("{what}: {actual} seen, expected at least {min}"),
        );
    }

    /// Marks the case as passed (writes the report line on drop).
    pub fn pass(mut self) {
        self.passed = true;
    }

    fn json_line(&self, result: &str) -> String {
        let mut s = String::from("{");
        let _ = write!(s, "\"case\":{},", self.id);
        for (k, v) in [
            ("name", self.name.as_str()),
            ("expectation", self.expectation.as_str()),
            ("result", result),
            ("seen", &self.seen.join("; ")),
            ("checks", &self.checks.join("; ")),
        ] {
            let _ = write!(s, "\"{k}\":\"{}\",", escape(v));
        }
        let _ = write!(s, "\"ms\":{}}}", self.start.elapsed().as_millis());
        s
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let result = if self.passed { "PASS" } else { "FAIL" };
        if !self.passed && !self.checks.iter().any(|c| c.starts_with("FAILED")) {
            let why = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "the test ended without passing (see its output)".into());
            self.checks.push(format!("FAILED: {why}"));
        }
        let Some(path) = std::env::var_os(REPORT_ENV) else {
            return;
        };
        let line = self.json_line(result) + "\n";
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = f.write_all(line.as_bytes());
            }
            Err(e) => eprintln!("netns-tests: cannot write {}: {e}", path.to_string_lossy()),
        }
    }
}

/// Escapes a string for a JSON string literal.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}
