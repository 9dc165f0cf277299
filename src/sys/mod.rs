//! The crate's only `unsafe` code. The rest of the crate is compiled with
//! `#![deny(unsafe_code)]`; this module alone is allowed it, and every `unsafe` block in it
//! carries a `SAFETY:` comment saying why it is sound.
//!
//! - [`netfilter`]: what the firewall engine needs beyond the safe `nftnl` and `mnl` APIs;
//! - [`process`]: what the OpenVPN launcher needs beyond `std` (descriptors opened without
//!   following links, per-thread filesystem credentials, `execveat`, pidfds).

pub mod netfilter;
pub mod process;

pub use netfilter::*;
