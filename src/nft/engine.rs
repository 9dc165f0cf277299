//! The engine that any ruleset goes through: apply in one transaction, verify by reading it
//! back, remove. The VPN firewall ([`crate::firewall`]) and other tables use it alike.

use crate::nft::readback::{self, Fingerprint};
use crate::nft::ruleset::Ruleset;
use crate::nft::transport::{self, Session, TableFlags, TransportError};

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
    /// The transaction committed but the table read back differs from the plan.
    #[error("the firewall was applied but reads back differently ({0}); another program may be changing nftables at the same time, run the command again")]
    NotVerified(String),
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

/// Replaces table `rs.table` with `rs` in one transaction, then reads it back.
pub fn apply(rs: &Ruleset) -> Result<Applied, Error> {
    apply_via(rs, TableFlags::NONE, &mut transport::commit)
}

/// Like [`apply`], through `session`, the table created with `flags`. With
/// [`TableFlags::OWNER`] the session's socket becomes the table's owner: from then on only
/// this session can change or remove it. Replacing a table that another live socket owns
/// fails with EPERM and changes nothing; a table without owner (ordinary, or orphaned by an
/// owner that closed its socket) is replaced in one transaction, with no moment without it.
pub fn apply_in(session: &mut Session, rs: &Ruleset, flags: TableFlags) -> Result<Applied, Error> {
    apply_via(rs, flags, &mut |enc| session.commit(enc))
}

/// Makes `session` the owner of table `rs.table` when it is orphaned (persisted after its
/// owner's socket closed) and holds exactly `rs`: one `table add` with `flags`, contents
/// untouched (counters included), then read back. Returns `Ok(None)`, with nothing changed,
/// when the table is absent, owned, not orphaned, or differs from `rs`: replace it with
/// [`apply_in`] then.
pub fn adopt_in(
    session: &mut Session,
    rs: &Ruleset,
    flags: TableFlags,
) -> Result<Option<Applied>, Error> {
    guard_namespace()?;
    let (comment, fingerprint) = comment_of(rs)?;
    match readback::ownership(&rs.table)? {
        Some(o) if o.is_orphaned() => {}
        _ => return Ok(None),
    }
    match readback::read_table(&rs.table)? {
        Some(k)
            if k.comment.as_deref() == Some(comment.as_str())
                && k.snapshot.fingerprint() == fingerprint => {}
        _ => return Ok(None),
    }
    session.commit(&transport::encode_adopt(&rs.table, flags)?)?;
    match readback::read_table(&rs.table)? {
        Some(k)
            if k.comment.as_deref() == Some(comment.as_str())
                && k.snapshot.fingerprint() == fingerprint =>
        {
            Ok(Some(Applied {
                fingerprint,
                comment,
            }))
        }
        // Changed between the check and the adoption: the caller replaces it.
        _ => Ok(None),
    }
}

/// Like [`remove`], through `session` (the only way to remove a table the session owns).
pub fn remove_in(session: &mut Session, name: &str) -> Result<bool, Error> {
    guard_namespace()?;
    let existed = readback::read_table(name)?.is_some();
    session.commit(&transport::encode_remove(name)?)?;
    Ok(existed)
}

/// Apply, with `commit` sending each batch.
fn apply_via(
    rs: &Ruleset,
    flags: TableFlags,
    commit: &mut dyn FnMut(&transport::Encoded) -> Result<(), TransportError>,
) -> Result<Applied, Error> {
    guard_namespace()?;
    let expected = readback::snapshot_of(rs)?;
    let fingerprint = expected.fingerprint();
    let comment = readback::comment_for(&rs.record, fingerprint);
    // A fresh start creates the table without deleting anything (no wait in the kernel); if
    // the table appeared in the meantime the kernel refuses that batch whole, and the
    // replacing batch runs instead.
    let created = if readback::table_exists(&rs.table)? {
        false
    } else {
        match commit(&transport::encode_create_flagged(rs, &comment, flags)?) {
            Ok(()) => true,
            Err(transport::TransportError::Rejected { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        }
    };
    if !created {
        commit(&transport::encode_replace_flagged(rs, &comment, flags)?)?;
    }
    if rs.set_ip_forward {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| Error::Sysctl {
            path: "/proc/sys/net/ipv4/ip_forward",
            source,
        })?;
    }
    match readback::read_table(&rs.table)? {
        None => Err(Error::NotVerified(format!(
            "table inet {} is missing",
            rs.table
        ))),
        Some(k) if k.comment.as_deref() != Some(comment.as_str()) => {
            Err(Error::NotVerified("its comment changed".into()))
        }
        Some(k) if k.snapshot.fingerprint() != fingerprint => Err(Error::NotVerified(
            k.snapshot.describe_difference(&expected),
        )),
        Some(_) => Ok(Applied {
            fingerprint,
            comment,
        }),
    }
}

/// Removes table `inet NAME` in one transaction. Returns whether it existed.
pub fn remove(name: &str) -> Result<bool, Error> {
    guard_namespace()?;
    let existed = readback::read_table(name)?.is_some();
    transport::commit(&transport::encode_remove(name)?)?;
    Ok(existed)
}
