//! Unique namespace names (`bmr-<pid>-<counter>-<role>`) and removal of namespaces left
//! behind by earlier test processes that were killed before they could clean up.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Prefix of every namespace the harness creates.
pub const PREFIX: &str = "bmr-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A fresh name for a namespace with this role (lowercase letters, digits, `-`).
pub fn unique(role: &str) -> String {
    SWEEP.call_once(sweep_stale);
    let role: String = role
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}-{role}", std::process::id())
}

/// The pid encoded in a harness namespace name, if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes `bmr-<pid>-*` namespaces whose process no longer exists.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .status();
        }
    }
}

/// Names of the harness namespaces that currently exist (any owner).
pub fn existing() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    v.sort();
    v
}
