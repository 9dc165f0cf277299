//! The VPN firewall: start, stop, status and dry runs, for the command line and for VPN
//! clients that embed the library.
//!
//! ```no_run
//! use bitmask_root::{firewall, policy::Policy};
//! # async fn demo() -> Result<(), bitmask_root::Error> {
//! let policy = Policy::builder()
//!     .gateway("198.51.100.7".parse().unwrap())
//!     .build()?;
//! println!("{}", firewall::dry_run(&policy).await?); // no root needed
//! firewall::start(&policy).await?;                    // one transaction
//! assert!(firewall::status().await?.is_up());
//! firewall::stop()?;
//! # Ok(()) }
//! ```

pub mod discovery;
#[cfg(test)]
mod golden_tests;
pub mod plan;
pub mod policy;
pub mod status;

use crate::error::Error;
use crate::firewall::discovery::Network;
use crate::firewall::plan::Ruleset;
use crate::firewall::policy::Policy;
use crate::nft::engine::{self, Applied};
use crate::nft::lock::NamespaceLock;

pub use crate::firewall::status::{status, Status};

/// Plans the firewall for `policy` on `net`. Pure.
pub fn plan(policy: &Policy, net: &Network) -> Result<Ruleset, Error> {
    Ok(plan::plan(policy, net)?)
}

/// Reads the network and renders the plan in nft syntax. Changes nothing; needs no root.
pub async fn dry_run(policy: &Policy) -> Result<String, Error> {
    let net = discovery::discover().await?;
    Ok(engine::render(&plan(policy, &net)?)?)
}

/// Starts the firewall, or replaces a running one, in one transaction.
///
/// Like every call here that changes or judges the firewall, it holds the command lock of the
/// calling thread's network namespace ([`crate::nft::lock`]) from before it reads the network
/// until the table is verified; while another command holds it, the calling thread sleeps, at
/// most [`crate::nft::lock::WAIT`], then the call fails having changed nothing.
pub async fn start(policy: &Policy) -> Result<Applied, Error> {
    engine::guard_namespace()?;
    let lock = NamespaceLock::acquire()?;
    let net = discovery::discover().await?;
    // Still on the thread (and in the namespace) the lock was taken for, which the guard
    // checked.
    lock.ensure_current()
        .map_err(crate::nft::engine::Error::from)?;
    let mut conn = crate::nft::transport::Connection::open()?;
    Ok(engine::apply_on(&mut conn, &plan(policy, &net)?)?)
}

/// Starts the firewall for an already discovered network (holding the command lock).
pub fn start_on(policy: &Policy, net: &Network) -> Result<Applied, Error> {
    Ok(engine::apply(&plan(policy, net)?)?)
}

/// Stops the firewall. Returns whether it was running; stopping a stopped firewall is fine.
/// Holds the command lock.
pub fn stop() -> Result<bool, Error> {
    Ok(engine::remove(plan::TABLE)?)
}
