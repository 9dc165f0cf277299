//! Identifying the openvpn we started: same start time as recorded, its executable is one
//! of the allowed binaries, and its command line begins with our marker.

use std::path::{Path, PathBuf};

use super::allowlist::MARKER;
use super::pidfile::Record;

/// What the process behind a pid-file record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// No such process, a zombie, or a different process that reused the pid.
    Gone,
    /// The openvpn we started.
    Ours,
    /// The same process (same start time) but not (yet) openvpn with our marker, e.g.
    /// bitmask-root between writing the pid file and exec.
    NotOpenvpn,
}

/// Start time (field 22) and state (field 3) from `/proc/PID/stat`.
pub(crate) fn stat(pid: u32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) is in parentheses and may contain anything: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// The canonical paths of the allowed binaries that exist.
pub(crate) fn canonical_binaries(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}

/// Identifies the process behind `rec`.
pub(crate) fn identify(rec: Record, binaries: &[PathBuf]) -> Identity {
    match stat(rec.pid) {
        Some((start, state)) if start == rec.starttime && state != 'Z' && state != 'X' => {}
        _ => return Identity::Gone,
    }
    let exe = match std::fs::read_link(format!("/proc/{}/exe", rec.pid)) {
        Ok(e) => e,
        Err(_) => return Identity::NotOpenvpn,
    };
    // After a package upgrade the link reads "/usr/sbin/openvpn (deleted)".
    let exe_s = exe.to_string_lossy();
    let exe = Path::new(exe_s.strip_suffix(" (deleted)").unwrap_or(&exe_s));
    if !binaries.iter().any(|b| b == exe) {
        return Identity::NotOpenvpn;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", rec.pid)) else {
        return Identity::NotOpenvpn;
    };
    let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let marker_ok = words.len() > MARKER.len()
        && words[1..=MARKER.len()]
            .iter()
            .zip(MARKER)
            .all(|(w, m)| *w == m.as_bytes());
    if marker_ok {
        Identity::Ours
    } else {
        Identity::NotOpenvpn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_parses() {
        let me = std::process::id();
        let (start, state) = stat(me).expect("own stat");
        assert!(start > 0);
        assert!(state == 'R' || state == 'S', "{state}");
        let rec = Record {
            pid: me,
            starttime: start,
        };
        assert_eq!(
            identify(rec, &[PathBuf::from("/usr/sbin/openvpn")]),
            Identity::NotOpenvpn
        );
        let other = Record {
            pid: me,
            starttime: start + 1,
        };
        assert_eq!(identify(other, &[]), Identity::Gone);
    }
}
