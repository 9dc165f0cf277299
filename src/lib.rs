//! bitmask-root: a netlink-native VPN kill switch.
pub mod cli;
pub mod discovery;
pub mod error;
pub mod netlink;
pub mod openvpn;
pub mod plan;
pub mod policy;
pub mod render;
pub mod status;
pub mod sys;
pub mod transport;
