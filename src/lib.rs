//! # bitmask-root: a netlink-native VPN kill switch
//!
//! A drop-in replacement for Bitmask's privileged `bitmask-root` helper, and a library for
//! Rust VPN clients. The firewall is one nftables table, built as one batch and committed in
//! one netlink transaction: no process is started, nothing is ever half-applied, and a running
//! firewall is replaced with no moment without protection.
//!
//! The crate's parts, lower layers first (a layer never imports one above it):
//! - [`nft`]: a ruleset to and from the kernel, shared by both firewalls: the intermediate
//!   form ([`nft::ruleset`]), nft text ([`nft::render`]), one batch ([`nft::encode`]) on one
//!   socket per command ([`nft::transport`]),
//!   read-back and fingerprint ([`nft::readback`]), apply/verify/remove ([`nft::engine`]),
//!   one command at a time per network namespace ([`nft::lock`]), a running table decoded
//!   ([`nft::decode`]) and the kernel's walk of a packet ([`nft::eval`]);
//! - [`firewall`]: the VPN kill switch: what the caller wants ([`firewall::policy`]), what the
//!   network is ([`firewall::discovery`], over rtnetlink), the pure plan
//!   ([`firewall::plan`]), whether the running table is still right
//!   ([`firewall::status`]), what it does with a packet and refused so far
//!   ([`firewall::explain`], [`firewall::report`]); the guard that keeps it
//!   ([`firewall::guard`]);
//! - [`email`]: the email firewall (`fw-email`), on the same engine;
//! - [`openvpn`]: the hardened OpenVPN launcher;
//! - [`cli`]: argv to a command and an exit code; [`error`]: the library's error type.
//!
//! ```
//! use bitmask_root::{discovery::{Interface, Network, Prefix}, firewall, policy::Policy};
//! let net = Network {
//!     interfaces: vec![Interface {
//!         name: "eth0".into(),
//!         index: 2,
//!         prefixes: vec![Prefix::new("192.168.1.10".parse().unwrap(), 24)],
//!     }],
//!     default_v4: Some("eth0".into()),
//!     default_v6: None,
//!     ipv6: true,
//! };
//! let policy = Policy::builder().gateway("198.51.100.7".parse().unwrap()).build().unwrap();
//! let rules = firewall::plan(&policy, &net).unwrap();
//! let text = bitmask_root::engine::render(&rules).unwrap();
//! assert!(text.contains("oifname \"eth0\" ip daddr 192.168.1.0/24 accept"));
//! assert!(text.contains("ip daddr @gateways4 accept"));
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod cli;
pub mod email;
pub mod error;
pub mod firewall;
pub mod nft;
pub mod openvpn;
#[allow(unsafe_code)]
pub(crate) mod sys;

// The modules by their short names, as the crate's first releases had them.
pub use firewall::{discovery, plan, policy, status};
pub use nft::{engine, netlink, readback, render, transport};

pub use error::Error;
