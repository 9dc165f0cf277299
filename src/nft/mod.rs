//! nftables over netlink: a [`ruleset::Ruleset`] to and from the kernel, shared by both
//! firewalls.
//!
//! - [`ruleset`]: the intermediate form (table, sets, base chains, rules);
//! - [`render`]: a ruleset in nft syntax, exactly as `nft list table` prints it;
//! - [`encode`]: a ruleset as the bytes of one batch;
//! - [`transport`]: one netfilter socket per command: the batch committed, errors read back,
//!   dumps, the generation;
//! - [`readback`]: a table dumped from the kernel, canonicalised and fingerprinted;
//! - [`decode`]: a table read back as a ruleset, with the counters of its rules;
//! - [`engine`]: apply in one transaction and verify, remove;
//! - [`eval`]: the kernel's walk of a packet through a ruleset, without the kernel;
//! - [`lock`]: one command at a time per network namespace;
//! - [`netlink`]: the netlink message and attribute framing the others parse.
//!
//! Nothing here knows which firewall a ruleset belongs to.

pub mod decode;
pub mod encode;
#[cfg(test)]
mod encode_oracle;
pub mod engine;
pub mod eval;
pub mod lock;
pub mod netlink;
pub mod readback;
pub mod render;
pub mod ruleset;
pub mod transport;
