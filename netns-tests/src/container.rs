//! Containers and VMs behind a host: a bridge in the host namespace (the client, usually)
//! and, per guest, a namespace linked to it by a veth pair whose host end is a port of the
//! bridge. This is how Docker's default bridge, podman, LXD and libvirt's networks are
//! wired; what they add on top (masquerade, port forwards, their `FORWARD` rules) is up to
//! the test, with the real `iptables-nft` or `nft` inside the host namespace.
//!
//! ```text
//!   [client]  docker0 172.17.0.1/16 ── veth ── eth0 172.17.0.2  [container]
//!             virbr1  192.168.100.1/24 ─ veth ── eth0 192.168.100.2 [vm]
//! ```
//!
//! Guests are namespaces the harness created (checked like every other one) and are
//! removed when dropped; the bridge goes with the host namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// A bridge in a host namespace, with the addresses guests use as their gateway.
#[derive(Debug, Clone)]
pub struct Bridge {
    name: String,
    v4: (Ipv4Addr, u8),
    v6: Option<(Ipv6Addr, u8)>,
}

/// A guest (container or VM) behind a [`Bridge`]. Dropping it deletes its namespace.
#[derive(Debug)]
pub struct Guest {
    ns: Netns,
    v4: Ipv4Addr,
    v6: Option<Ipv6Addr>,
    host_if: String,
}

/// Turns on IPv4 and IPv6 forwarding in `host`, as Docker, libvirt or a shared connection
/// do (the kill switch under test never does in its default profile).
pub fn enable_forwarding(host: &Netns) -> Result<()> {
    host.sysctl(&[
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
    ])
}

impl Bridge {
    /// Creates bridge `name` (at most 15 bytes) in `host` with `v4` (and `v6`) as its
    /// address and prefix length, and brings it up.
    pub fn create(
        host: &Netns,
        name: &str,
        v4: (Ipv4Addr, u8),
        v6: Option<(Ipv6Addr, u8)>,
    ) -> Result<Bridge> {
        if name.is_empty() || name.len() > 15 {
            return Err(Error::new(format!(
                "bridge name {name:?} is not 1-15 bytes"
            )));
        }
        let mut lines = vec![
            format!("link add {name} type bridge"),
            format!("addr add {}/{} dev {name}", v4.0, v4.1),
        ];
        if let Some((a, l)) = v6 {
            lines.push(format!("addr add {a}/{l} dev {name} nodad"));
        }
        lines.push(format!("link set {name} up"));
        host.ip_batch(&lines)?;
        Ok(Bridge {
            name: name.to_string(),
            v4,
            v6,
        })
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge's IPv4 address (the guests' gateway).
    pub fn v4(&self) -> Ipv4Addr {
        self.v4.0
    }

    /// The bridge's IPv6 address, if it has one.
    pub fn v6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|(a, _)| a)
    }

    /// Creates a guest namespace (`role` names it) with `eth0` holding `v4` (and `v6`) in
    /// the bridge's prefixes and default routes via the bridge, plugged into this bridge
    /// of `host` through a veth pair whose host end is named `host_if` (at most 15 bytes,
    /// unique in `host`).
    pub fn attach(
        &self,
        host: &Netns,
        role: &str,
        host_if: &str,
        v4: Ipv4Addr,
        v6: Option<Ipv6Addr>,
    ) -> Result<Guest> {
        if host_if.is_empty() || host_if.len() > 15 {
            return Err(Error::new(format!(
                "interface name {host_if:?} is not 1-15 bytes"
            )));
        }
        let ns = Netns::create(role)?;
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            host_if,
            "netns",
            host.name(),
        ])?;
        host.ip_batch(&[
            format!("link set {host_if} master {}", self.name),
            format!("link set {host_if} up"),
        ])?;
        let mut lines = vec![
            "link set eth0 up".to_string(),
            format!("addr add {v4}/{} dev eth0", self.v4.1),
            format!("route add default via {} dev eth0", self.v4.0),
        ];
        match (v6, self.v6) {
            (Some(a), Some((gw, len))) => {
                lines.push(format!("addr add {a}/{len} dev eth0 nodad"));
                lines.push(format!("route add default via {gw} dev eth0"));
            }
            (Some(_), None) => {
                return Err(Error::new(format!(
                    "bridge {} has no IPv6 address for the guest's gateway",
                    self.name
                )))
            }
            _ => {}
        }
        ns.ip_batch(&lines)?;
        Ok(Guest {
            ns,
            v4,
            v6,
            host_if: host_if.to_string(),
        })
    }
}

impl Guest {
    /// The guest's namespace (send and listen from here).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The guest's IPv4 address.
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
    }

    /// The guest's IPv6 address, if it has one.
    pub fn v6(&self) -> Option<Ipv6Addr> {
        self.v6
    }

    /// The guest's address of the family of `like`.
    pub fn addr_like(&self, like: IpAddr) -> Option<IpAddr> {
        match like {
            IpAddr::V4(_) => Some(IpAddr::V4(self.v4)),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    /// The name of the host end of its veth pair (a port of the bridge).
    pub fn host_if(&self) -> &str {
        &self.host_if
    }
}
