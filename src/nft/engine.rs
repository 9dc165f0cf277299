//! The engine that any ruleset goes through: apply in one transaction, verify by reading it
//! back, remove. The VPN firewall ([`crate::firewall`]) and other tables use it alike.
//!
//! Each change holds the namespace's command lock ([`crate::nft::lock`]) for its whole run;
//! callers that already hold it use [`apply_held`] and [`remove_held`]. The `*_in` functions
//! change a table through a [`Session`] that keeps one netfilter socket (the owner of a table
//! created with [`TableFlags::OWNER`]); their callers hold the lock for each call.

use crate::nft::encode::{self, Mode};
use crate::nft::lock::{LockError, NamespaceLock};
use crate::nft::readback::{self, Echo, Fingerprint, KernelTable, Snapshot};
use crate::nft::ruleset::Ruleset;
use crate::nft::transport::{self, Generation, Session, TableFlags};

/// Why the engine could not apply, verify or remove a table. [`crate::Error`] carries each
/// of these as its own variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel could not be reached or refused the ruleset.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// `BITMASK_ROOT_REQUIRE_NETNS` is set and this is the machine's initial namespace.
    #[error("refusing to touch this network namespace: BITMASK_ROOT_REQUIRE_NETNS protects it (or is not an inode number); run inside a test namespace (ip netns exec NAME ...)")]
    InitialNamespace,
    /// The transaction committed, nothing was committed after it, and yet the table read back
    /// differs from the plan: the kernel does not hold what was sent.
    #[error("the firewall was applied but the kernel holds something else ({0}); run the command again, and report a bug if this repeats")]
    NotVerified(String),
    /// The transaction committed, then another program committed a change to nftables that
    /// altered the table before it was read back.
    #[error("the firewall was applied, but another program changed nftables right after us (generation {ours} was ours, {now} is current): {what}; find what else manages nftables here, then run the command again")]
    ChangedAfterUs {
        /// The generation our commit produced.
        ours: Generation,
        /// The generation the table was read back at.
        now: Generation,
        /// How the table differs from what we committed.
        what: String,
    },
    /// The namespace's command lock could not be taken; nothing was changed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A sysctl could not be written.
    #[error("could not write {path} ({source})")]
    Sysctl {
        /// The file.
        path: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Environment variable, a safety net for test harnesses: set it to the inode number of the
/// network namespace that must never be touched (the harness's own, `stat -L -c %i
/// /proc/self/ns/net`), and every change refuses to run there. The namespace of PID 1 is
/// refused too whenever it can be read.
pub const REQUIRE_NETNS_ENV: &str = "BITMASK_ROOT_REQUIRE_NETNS";

/// Fails with [`Error::InitialNamespace`] when [`REQUIRE_NETNS_ENV`] is set and the calling
/// thread is in the namespace it names, or in PID 1's, or the value is not an inode number.
pub fn guard_namespace() -> Result<(), Error> {
    let Some(value) = std::env::var_os(REQUIRE_NETNS_ENV) else {
        return Ok(());
    };
    use std::os::unix::fs::MetadataExt;
    let protected: Option<u64> = value.to_str().and_then(|v| v.trim().parse().ok());
    let ours = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .ok();
    let init = std::fs::metadata("/proc/1/ns/net").map(|m| m.ino()).ok();
    match (protected, ours) {
        (Some(p), Some(o)) if o != p && init != Some(o) => Ok(()),
        _ => Err(Error::InitialNamespace),
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The fingerprint of the rules now in the kernel.
    pub fingerprint: Fingerprint,
    /// The table comment written.
    pub comment: String,
    /// The nftables generation the table was verified at.
    pub generation: Generation,
    /// How the table was verified.
    pub verified_by: Verification,
}

/// How an apply verified that the kernel holds the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// By the kernel's echo of the table, sets, chains and rules it committed, a dump of each
    /// set's elements, and the generation after them, which was still the commit's own.
    Echo,
    /// By reading the whole table back at one generation: someone committed after us, or the
    /// echo did not account for the whole table.
    ReadBack,
}

/// The comment a ruleset is applied with: its record and its fingerprint.
pub fn comment_of(rs: &Ruleset) -> Result<(String, Fingerprint), Error> {
    let fp = readback::snapshot_of(rs)?.fingerprint();
    Ok((readback::comment_for(&rs.record, fp), fp))
}

/// The ruleset in nft syntax, exactly as `nft list table inet NAME` will show it.
pub fn render(rs: &Ruleset) -> Result<String, Error> {
    let (comment, _) = comment_of(rs)?;
    Ok(crate::nft::render::render(rs, &comment))
}

/// Replaces table `rs.table` with `rs` in one transaction, then reads it back. Holds the
/// namespace's command lock throughout.
pub fn apply(rs: &Ruleset) -> Result<Applied, Error> {
    guard_namespace()?;
    // Taken here, on this thread: it is this namespace's lock.
    let _lock = NamespaceLock::acquire()?;
    apply_on(&mut Session::open()?, rs, TableFlags::NONE)
}

/// [`apply`] for a caller that holds the namespace's command lock.
///
/// Everything goes over one netfilter socket: whether the table exists, the commit, the
/// generation, and a read-back only when it is needed. The batch asks the kernel to echo
/// every object it commits; when the echo is the plan and the generation right after is the
/// one our commit produced, the kernel holds exactly what was planned, and the table is not
/// read again. Otherwise (someone committed after us, or the echo is not the plan) the table
/// is read back whole at one generation and judged: a difference after someone else's commit
/// is theirs ([`Error::ChangedAfterUs`]), without one it is [`Error::NotVerified`].
pub fn apply_held(rs: &Ruleset, lock: &NamespaceLock) -> Result<Applied, Error> {
    guard_namespace()?;
    lock.ensure_current()?;
    apply_on(&mut Session::open()?, rs, TableFlags::NONE)
}

/// Like [`apply_held`], through `session`, the table created with `flags`. With
/// [`TableFlags::OWNER`] the session's socket becomes the table's owner: from then on only
/// this session can change or remove it. Replacing a table that another live socket owns
/// fails with EPERM and changes nothing; a table without owner (ordinary, or orphaned by an
/// owner that closed its socket) is replaced in one transaction, with no moment without it.
///
/// The caller holds the namespace's command lock (`lock`) for the call, as for
/// [`apply_held`]; a session (a guard) takes it for each change, never for its whole life.
pub fn apply_in(
    session: &mut Session,
    rs: &Ruleset,
    flags: TableFlags,
    lock: &NamespaceLock,
) -> Result<Applied, Error> {
    guard_namespace()?;
    lock.ensure_current()?;
    apply_on(session, rs, flags)
}

/// Makes `session` the owner of table `rs.table` when it is orphaned (persisted after its
/// owner's socket closed) and holds exactly `rs`: one `table add` with `flags`, contents
/// untouched (counters included), then read back at one generation. Returns `Ok(None)`,
/// with nothing changed, when the table is absent, owned, not orphaned, or differs from `rs`:
/// replace it with [`apply_in`] then. The caller holds the command lock (`lock`).
pub fn adopt_in(
    session: &mut Session,
    rs: &Ruleset,
    flags: TableFlags,
    lock: &NamespaceLock,
) -> Result<Option<Applied>, Error> {
    guard_namespace()?;
    lock.ensure_current()?;
    let (comment, fingerprint) = comment_of(rs)?;
    let holds_plan = |k: &Option<readback::KernelTable>| {
        k.as_ref().is_some_and(|k| {
            k.comment.as_deref() == Some(comment.as_str())
                && k.snapshot.fingerprint() == fingerprint
        })
    };
    match readback::ownership(&rs.table)? {
        Some(o) if o.is_orphaned() => {}
        _ => return Ok(None),
    }
    if !holds_plan(&readback::read_table(&rs.table)?) {
        return Ok(None);
    }
    session.commit(&transport::encode_adopt(&rs.table, flags)?)?;
    // Once adopted, only this session may change the table: what is read back is what it
    // adopted. Another program may have changed it between the check and the adoption; the
    // caller replaces it then.
    let back = readback::read_table_at(&rs.table)?;
    if !holds_plan(&back.table) {
        return Ok(None);
    }
    Ok(Some(Applied {
        fingerprint,
        comment,
        generation: back.generation,
        verified_by: Verification::ReadBack,
    }))
}

/// Like [`remove_held`], through `session` (the only way to remove a table the session
/// owns). The caller holds the command lock (`lock`).
pub fn remove_in(session: &mut Session, name: &str, lock: &NamespaceLock) -> Result<bool, Error> {
    guard_namespace()?;
    lock.ensure_current()?;
    remove_on(session, name)
}

/// [`apply_held`] on an open session, the table created with `flags`: for a caller that holds
/// the command lock of the calling thread's namespace, taken on this thread, and has checked
/// [`guard_namespace`].
pub fn apply_on(conn: &mut Session, rs: &Ruleset, flags: TableFlags) -> Result<Applied, Error> {
    // One encoding: the expected snapshot is read from the very messages that are sent, and
    // only the table's head is rewritten once its comment (which holds the fingerprint) is
    // known.
    let mut enc = encode::ruleset_flagged(rs, Mode::Create, "", flags)
        .map_err(transport::TransportError::from)?;
    let expected = readback::expected_snapshot(rs, enc.body());
    let fingerprint = expected.fingerprint();
    let comment = readback::comment_for(&rs.record, fingerprint);
    // A fresh start creates the table without deleting anything (no wait in the kernel); if
    // the table appeared in the meantime the kernel refuses that batch whole, and the
    // replacing batch runs instead.
    let mut echo = Echo::new(&rs.table);
    let mut committed = None;
    if !readback::table_exists_on(conn, &rs.table)? {
        enc.set_head(Mode::Create, &comment)
            .map_err(transport::TransportError::from)?;
        match conn.commit_echo(&enc, &mut |m| echo.absorb(m)) {
            Ok(c) => committed = Some(c),
            Err(transport::TransportError::Rejected { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                echo = Echo::new(&rs.table);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let committed = match committed {
        Some(c) => c,
        None => {
            enc.set_head(Mode::Replace, &comment)
                .map_err(transport::TransportError::from)?;
            conn.commit_echo(&enc, &mut |m| echo.absorb(m))?
        }
    };
    let ours = committed.generation;
    if rs.set_ip_forward {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| Error::Sysctl {
            path: "/proc/sys/net/ipv4/ip_forward",
            source,
        })?;
    }
    // The echo accounts for the table, its sets, chains and rules as committed; the
    // elements are dumped; the generation after them all must still be ours.
    let echoed = echo.finish().filter(|_| committed.echo_complete);
    if let (Some(g), Some(mut table)) = (ours, echoed) {
        let (seen, consistent) = readback::read_elements_on(conn, &rs.table, &mut table)?;
        let now = conn.generation()?;
        if g == now
            && consistent
            && seen.iter().all(|r| *r == g.res_id())
            && difference(&rs.table, Some(&table), &comment, fingerprint, &expected).is_none()
        {
            return Ok(Applied {
                fingerprint,
                comment,
                generation: g,
                verified_by: Verification::Echo,
            });
        }
    }
    let back = readback::read_table_on(conn, &rs.table)?;
    verdict(
        difference(
            &rs.table,
            back.table.as_ref(),
            &comment,
            fingerprint,
            &expected,
        ),
        ours,
        back.generation,
    )?;
    Ok(Applied {
        fingerprint,
        comment,
        generation: back.generation,
        verified_by: Verification::ReadBack,
    })
}

/// How a table read back (or echoed) differs from the plan, if it does.
fn difference(
    name: &str,
    table: Option<&KernelTable>,
    comment: &str,
    fingerprint: Fingerprint,
    expected: &Snapshot,
) -> Option<String> {
    match table {
        None => Some(format!("table inet {name} is missing")),
        Some(k) if k.comment.as_deref() != Some(comment) => Some("its comment changed".to_string()),
        Some(k) if k.snapshot.fingerprint() != fingerprint => {
            Some(k.snapshot.describe_difference(expected))
        }
        Some(_) => None,
    }
}

/// What a read-back that differs from the plan (`difference`) means, given the generation our
/// commit produced (`ours`, if the kernel said) and the one the table was read at: if
/// someone committed after us, that is what happened; if not, the kernel does not hold what
/// we sent.
fn verdict(
    difference: Option<String>,
    ours: Option<Generation>,
    read_at: Generation,
) -> Result<(), Error> {
    match (difference, ours) {
        (None, _) => Ok(()),
        (Some(what), Some(ours)) if read_at != ours => Err(Error::ChangedAfterUs {
            ours,
            now: read_at,
            what,
        }),
        (Some(what), Some(_)) => Err(Error::NotVerified(what)),
        (Some(what), None) => Err(Error::NotVerified(format!(
            "{what}; the kernel did not say which generation we committed, so another program may have changed it"
        ))),
    }
}

/// Removes table `inet NAME` in one transaction. Returns whether it existed. Holds the
/// namespace's command lock throughout.
pub fn remove(name: &str) -> Result<bool, Error> {
    guard_namespace()?;
    // Taken here, on this thread: it is this namespace's lock.
    let _lock = NamespaceLock::acquire()?;
    remove_on(&mut Session::open()?, name)
}

/// [`remove`] for a caller that holds the namespace's command lock.
pub fn remove_held(name: &str, lock: &NamespaceLock) -> Result<bool, Error> {
    guard_namespace()?;
    lock.ensure_current()?;
    remove_on(&mut Session::open()?, name)
}

/// [`remove_held`] on an open connection: for a caller that holds the command lock of the
/// calling thread's namespace, taken on this thread, and has checked
/// [`guard_namespace`].
pub fn remove_on(conn: &mut Session, name: &str) -> Result<bool, Error> {
    let existed = readback::table_exists_on(conn, name)?;
    conn.commit(&transport::encode_remove(name)?)?;
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_generation_is_another_programs_change_not_our_failure() {
        let (g7, g8) = (Generation(7), Generation(8));
        assert!(
            verdict(None, Some(g7), g8).is_ok(),
            "a later commit that left us intact"
        );
        let e = verdict(Some("chain output is missing".into()), Some(g7), g8).unwrap_err();
        assert!(matches!(e, Error::ChangedAfterUs { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("another program changed nftables right after us"),
            "{text}"
        );
        assert!(text.contains("chain output is missing"), "{text}");
        let e = verdict(Some("chain output is missing".into()), Some(g7), g7).unwrap_err();
        assert!(matches!(e, Error::NotVerified(_)), "{e}");
        assert!(!e.to_string().contains("another program"), "{e}");
    }
}
