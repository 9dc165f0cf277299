//! # bitmask-root: a netlink-native VPN kill switch
//!
//! A drop-in replacement for Bitmask's privileged `bitmask-root` helper, and a library for
//! Rust VPN clients. The firewall is one nftables table, built as one batch and committed in
//! one netlink transaction: no process is started, nothing is ever half-applied, and a running
//! firewall is replaced with no moment without protection.
//!
//! The pipeline, one module each:
//! - [`policy`]: what the caller wants ([`policy::Policy`], built with a builder);
//! - [`discovery`]: what the network is, read over rtnetlink;
//! - [`plan`]: a pure function (policy, network) → [`plan::Ruleset`];
//! - [`render`]: the ruleset in nft syntax (`--dry-run`);
//! - [`transport`]: the ruleset as one nftnl batch, sent with mnl, errors read back;
//! - [`readback`] and [`status`]: the table read back and compared with the plan;
//! - [`firewall`]: start, stop, status for callers; [`cli`]: the command line.
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
pub mod discovery;
pub mod email;
pub mod engine;
pub mod error;
pub mod firewall;
pub mod netlink;
pub mod openvpn;
pub mod plan;
pub mod policy;
pub mod readback;
pub mod render;
pub mod status;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod transport;

pub use error::Error;
