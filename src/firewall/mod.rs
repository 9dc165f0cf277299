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
mod eval_tests;
pub mod explain;
#[cfg(test)]
mod golden_tests;
pub mod json;
pub mod plan;
pub mod policy;
pub mod report;
pub mod route;
pub mod status;

use crate::error::Error;
use crate::firewall::discovery::Network;
use crate::firewall::plan::Ruleset;
use crate::firewall::policy::Policy;
use crate::nft::engine::{self, Applied};

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
pub async fn start(policy: &Policy) -> Result<Applied, Error> {
    engine::guard_namespace()?;
    let net = discovery::discover().await?;
    start_on(policy, &net)
}

/// Starts the firewall for an already discovered network.
pub fn start_on(policy: &Policy, net: &Network) -> Result<Applied, Error> {
    Ok(engine::apply(&plan(policy, net)?)?)
}

/// Stops the firewall. Returns whether it was running; stopping a stopped firewall is fine.
pub fn stop() -> Result<bool, Error> {
    Ok(engine::remove(plan::TABLE)?)
}
