//! # netns-tests: prove that a kill switch does not leak
//!
//! A harness that builds throw-away network topologies out of Linux network namespaces and
//! veth pairs, runs a firewall inside the client namespace, and sends real packets with
//! probes that report where they actually landed. It never touches the machine's own
//! namespace: every namespace is checked against `/proc/1/ns/net` before anything runs in
//! it, and nothing is linked to the machine's namespace.
//!
//! * [`Topology`] builds client, LAN router, "internet", optional VPN side behind a
//!   simulated `tun0`, and an optional second uplink; dropping it removes them all.
//! * [`container`] puts containers and VMs behind a bridge in a namespace (usually the
//!   client), as Docker, podman and libvirt do.
//! * [`Netns`] is one namespace: run commands in it ([`Netns::exec`]), run closures on a
//!   thread inside it ([`Netns::run`], [`Netns::spawn`]).
//! * [`probe`] has listeners that count arrivals where they land ([`probe::udp::UdpListener`],
//!   [`probe::tcp::TcpListener`], [`probe::icmp::EchoCounter`], [`probe::dns::DnsResponder`],
//!   [`probe::tap::Tap`]) and bounded senders.
//! * [`dnsmasq::Dnsmasq`] runs a real dnsmasq in a namespace (a desktop's stub resolver, a
//!   LAN router's DNS server).
//! * [`BitmaskRoot`] runs the binary under test in a namespace ([`GuardProcess`]: a running
//!   `firewall guard` and its log); [`nft`] reads rulesets.
//! * [`report::Case`] records a leak-matrix case for the markdown report.
//!
//! See `README.md` in this crate for a guide. Everything needs root (CAP_SYS_ADMIN and
//! CAP_NET_ADMIN).

#![warn(missing_docs)]

pub mod addr;
pub mod bitmask;
pub mod cmd;
pub mod container;
pub mod dnsmasq;
pub mod error;
pub mod guard;
pub mod names;
pub mod netns;
pub mod nft;
pub mod probe;
pub mod report;
mod sys;
pub mod topology;

pub use bitmask::BitmaskRoot;
pub use cmd::{CmdOutput, Running};
pub use error::{Error, Result};
pub use guard::GuardProcess;
pub use netns::{Netns, NsThread};
pub use probe::SendOpts;
pub use topology::{Topology, TopologyBuilder};

/// Whether the harness can run here: root, and `ip` available. Tests must fail, never skip,
/// when it cannot: a skipped leak test proves nothing.
pub fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Raises the stack limit of this process so children can be exec'd with very long
/// argument lists (up to about 6 MiB, the kernel's cap).
pub fn allow_huge_argv() -> Result<()> {
    sys::raise_stack_limit(64 << 20).map_err(|e| Error::new(format!("setrlimit: {e}")))
}

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
