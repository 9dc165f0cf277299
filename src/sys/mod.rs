//! The crate's only `unsafe` code. The rest of the crate is compiled with
//! `#![deny(unsafe_code)]`; this module alone is allowed it, and every `unsafe` block in it
//! carries a `SAFETY:` comment saying why it is sound.
//!
//! - [`netlink`]: a blocking netlink socket (netfilter and rtnetlink);
//! - [`netfilter`]: socket options for it, and the effective user id;
//! - [`flock`]: the `flock(2)` behind the per-namespace command lock and the guard's lock;
//! - [`guard`]: the thread id, which the firewall guard needs;
//! - [`openvpn`]: what the OpenVPN launcher needs beyond `std` (descriptors opened without
//!   following links, per-thread filesystem credentials, executing the checked binary, pidfds);
//!   the launcher is the only part of the crate that starts a process.

pub mod flock;
pub mod guard;
pub mod netfilter;
pub mod netlink;
#[cfg(test)]
pub mod nftnl_oracle;
pub mod openvpn;

pub use netfilter::*;
