//! What a guard does, as events: the items of its [`Stream`](futures::Stream), one log line
//! each on the command line.

use std::fmt;
use std::time::Duration;

use crate::nft::engine::Applied;

/// How the guard keeps its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The kernel keeps the table for the guard: it was created with the table flags owner
    /// and persist, so only the guard's netlink socket may change or delete it (`flush
    /// ruleset` from any other program skips it), and when the guard ends the table stays.
    Owner,
    /// The fallback: the table is ordinary, and the guard re-applies it within milliseconds of
    /// any change it sees in nftables' notifications.
    Watch(WatchReason),
}

impl Mode {
    /// The word used in log lines and on the control socket: `owner` or `watch`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Owner => "owner",
            Mode::Watch(_) => "watch",
        }
    }
}

/// Why a guard watches instead of owning its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchReason {
    /// The caller asked for it ([`super::GuardOptions::watch_only`], or
    /// `BITMASK_ROOT_GUARD_MODE=watch`).
    Asked,
    /// The kernel refused the table flags (owner needs Linux 5.12, persist 6.9).
    Unsupported(String),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Owner => f.write_str(
                "mode owner: only this guard may change or delete it, and the kernel keeps it if the guard ends",
            ),
            Mode::Watch(WatchReason::Asked) => f.write_str(
                "mode watch, as asked: re-applied within milliseconds whenever nftables changes it",
            ),
            Mode::Watch(WatchReason::Unsupported(why)) => write!(
                f,
                "mode watch: the kernel refused the table flags owner and persist ({why}; Linux 6.9 or later has them), so it is re-applied within milliseconds whenever nftables changes it"
            ),
        }
    }
}

/// What the guard found in place of its table when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// There was no table: it was created.
    Created,
    /// An orphaned table (kept by the kernel after its guard ended) held exactly this plan:
    /// the guard became its owner without touching its rules.
    Adopted,
    /// A table of the same name was replaced in one transaction (never absent in between).
    Replaced {
        /// Whether the replaced table was orphaned (persisted without owner).
        orphaned: bool,
    },
}

impl fmt::Display for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Takeover::Created => "created it",
            Takeover::Adopted => "adopted the orphaned table left by an earlier guard, unchanged",
            Takeover::Replaced { orphaned: true } => {
                "replaced the orphaned table left by an earlier guard in one transaction"
            }
            Takeover::Replaced { orphaned: false } => {
                "replaced the running table in one transaction"
            }
        })
    }
}

/// The process that committed an nftables change, as the kernel names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changer {
    /// Its thread id, when the notification carried one.
    pub pid: Option<u32>,
    /// Its command name, when the notification carried one.
    pub name: Option<String>,
}

impl fmt::Display for Changer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pid, &self.name) {
            (Some(p), Some(n)) => write!(f, "pid {p} ({n})"),
            (Some(p), None) => write!(f, "pid {p}"),
            (None, Some(n)) => write!(f, "{n}"),
            (None, None) => f.write_str("an unknown program (notifications were lost)"),
        }
    }
}

/// One thing a guard did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The guard applied its policy and now keeps the table.
    Started {
        /// How it keeps it.
        mode: Mode,
        /// What it found in place.
        takeover: Takeover,
        /// What is in the kernel now.
        applied: Applied,
        /// Time from the start to the table verified in place.
        took: Duration,
    },
    /// [`super::GuardHandle::update`] swapped the policy.
    Updated {
        /// What is in the kernel now.
        applied: Applied,
        /// Time to apply and verify.
        took: Duration,
    },
    /// The network changed (a burst of rtnetlink notices, debounced) and was read again.
    NetworkChanged {
        /// How many notices the burst held.
        notices: usize,
        /// The re-planned table, when the plan changed (`None`: the plan is the same).
        replanned: Option<Applied>,
        /// Time from the first notice of the burst to the table verified in place (or to the
        /// plan found unchanged).
        took: Duration,
    },
    /// Another program committed an nftables change; the guard's table is intact.
    Intact {
        /// Who committed it.
        by: Changer,
    },
    /// The guard's table was changed or removed and the guard put it back.
    Repaired {
        /// Who committed the change.
        by: Changer,
        /// What had changed.
        what: String,
        /// What is in the kernel now.
        applied: Applied,
        /// Time from the notification to the table verified in place.
        took: Duration,
    },
    /// Something failed; the table in place stays (fail closed) and the guard retries.
    Error {
        /// What failed, and what the guard does about it.
        what: String,
    },
    /// [`super::GuardHandle::stop`] removed the table (or found it gone); the guard ended.
    Stopped {
        /// Whether the table was there.
        removed: bool,
    },
    /// The guard ended and left the table in place (kept by the kernel, orphaned, in mode
    /// owner; ordinary in mode watch).
    Left {
        /// The mode it ran in.
        mode: Mode,
    },
}

fn ms(d: &Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for Event {
    /// One log line, starting with a keyword: `started`, `updated`, `network`, `intact`,
    /// `repaired`, `error`, `stopped`, `left`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started {
                mode,
                takeover,
                applied,
                took,
            } => write!(
                f,
                "started: guarding table inet bitmask ({mode}); {takeover} (rules {}) in {}",
                applied.fingerprint,
                ms(took)
            ),
            Event::Updated { applied, took } => write!(
                f,
                "updated: new policy applied (rules {}) in {}",
                applied.fingerprint,
                ms(took)
            ),
            Event::NetworkChanged {
                notices,
                replanned: Some(applied),
                took,
            } => write!(
                f,
                "network: changed ({notices} notice{}); re-planned and applied (rules {}) in {}",
                if *notices == 1 { "" } else { "s" },
                applied.fingerprint,
                ms(took)
            ),
            Event::NetworkChanged {
                notices,
                replanned: None,
                ..
            } => write!(
                f,
                "network: changed ({notices} notice{}); the plan is the same, nothing to apply",
                if *notices == 1 { "" } else { "s" }
            ),
            Event::Intact { by } => write!(
                f,
                "intact: nftables changed by {by}; table inet bitmask untouched"
            ),
            Event::Repaired {
                by,
                what,
                applied,
                took,
            } => write!(
                f,
                "repaired: table inet bitmask was changed by {by} ({what}); re-applied (rules {}) in {}",
                applied.fingerprint,
                ms(took)
            ),
            Event::Error { what } => write!(f, "error: {what}"),
            Event::Stopped { removed: true } => {
                f.write_str("stopped: table inet bitmask removed; the guard ends")
            }
            Event::Stopped { removed: false } => {
                f.write_str("stopped: table inet bitmask was already gone; the guard ends")
            }
            Event::Left { mode: Mode::Owner } => f.write_str(
                "left: the guard ends and the firewall stays up (the kernel keeps the table, orphaned, until firewall stop or a new guard)",
            ),
            Event::Left { .. } => f.write_str(
                "left: the guard ends and the firewall stays up (an ordinary table again, nothing repairs it now)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::readback::Fingerprint;

    #[test]
    fn every_log_line_starts_with_its_keyword() {
        let applied = Applied {
            fingerprint: Fingerprint(0x1234),
            comment: "c".into(),
            generation: crate::nft::transport::Generation(7),
            verified_by: crate::nft::engine::Verification::Echo,
        };
        let ms = Duration::from_micros(1500);
        let by = Changer {
            pid: Some(7),
            name: Some("nft".into()),
        };
        let cases = [
            (
                Event::Started {
                    mode: Mode::Watch(WatchReason::Unsupported("Operation not supported".into())),
                    takeover: Takeover::Replaced { orphaned: true },
                    applied: applied.clone(),
                    took: ms,
                },
                "started: ",
            ),
            (
                Event::Updated {
                    applied: applied.clone(),
                    took: ms,
                },
                "updated: ",
            ),
            (
                Event::NetworkChanged {
                    notices: 1,
                    replanned: None,
                    took: ms,
                },
                "network: ",
            ),
            (Event::Intact { by: by.clone() }, "intact: "),
            (
                Event::Repaired {
                    by,
                    what: "it was deleted".into(),
                    applied,
                    took: ms,
                },
                "repaired: ",
            ),
            (Event::Error { what: "x".into() }, "error: "),
            (Event::Stopped { removed: true }, "stopped: "),
            (Event::Left { mode: Mode::Owner }, "left: "),
        ];
        for (event, keyword) in cases {
            let line = event.to_string();
            assert!(line.starts_with(keyword), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        let started = Event::Started {
            mode: Mode::Watch(WatchReason::Unsupported("Operation not supported".into())),
            takeover: Takeover::Created,
            applied: Applied {
                fingerprint: Fingerprint(0x1234),
                comment: "c".into(),
                generation: crate::nft::transport::Generation(7),
                verified_by: crate::nft::engine::Verification::Echo,
            },
            took: ms,
        }
        .to_string();
        assert!(
            started.contains("mode watch") && started.contains("refused the table flags"),
            "the fallback says which mode is active and why: {started}"
        );
        assert!(started.contains("rules 0000000000001234") && started.contains("1.5 ms"));
    }
}
