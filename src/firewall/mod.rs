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
//!
//! What the firewall does with one packet, and what it refused so far ([`explain`],
//! [`report`]), for the firewall running in the calling thread's namespace:
//!
//! ```no_run
//! use bitmask_root::firewall::{explain, report};
//! # fn demo() -> Result<(), bitmask_root::Error> {
//! let q = explain::Question::new("192.168.2.5".parse().unwrap(), Some(631), explain::Protocol::Tcp);
//! let answer = explain::explain_running(&q)?;   // read back, routed over rtnetlink
//! println!("{answer}");                          // "rejected with a TCP reset: ..."
//! let status = report::report()?;
//! println!("{}", status.to_json().pretty());     // schema bitmask-root/status, version 1
//! # Ok(()) }
//! ```

pub mod discovery;
#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod eval_tests;
pub mod explain;
pub mod forward;
#[cfg(test)]
mod golden_tests;
pub mod guard;
pub mod json;
pub mod plan;
pub mod policy;
pub mod report;
pub mod resolver_route;
pub mod route;
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
    start_held(policy, &lock).await
}

/// [`start`] for a caller that holds the command lock (`lock`).
pub async fn start_held(policy: &Policy, lock: &NamespaceLock) -> Result<Applied, Error> {
    let net = discovery::discover().await?;
    Ok(engine::apply_held(&plan(policy, &net)?, lock)?)
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

/// [`stop`] for a caller that holds the command lock (`lock`).
pub fn stop_held(lock: &NamespaceLock) -> Result<bool, Error> {
    Ok(engine::remove_held(plan::TABLE, lock)?)
}

/// What the status line should add about DNS for a running firewall with `policy`: `None`
/// when the resolver is routed through the tunnel, else why DNS fails (e.g. "DNS will fail:
/// 10.42.0.1 is routed via wlan0, not the tunnel"). Reads the route in the calling thread's
/// namespace; never changes whether the firewall counts as up.
pub async fn dns_warning(policy: &Policy) -> Result<Option<String>, Error> {
    let route = resolver_route::lookup(policy.resolver()).await?;
    Ok(resolver_route::dns_warning(
        policy.resolver(),
        &route,
        policy.tunnel(),
    ))
}
