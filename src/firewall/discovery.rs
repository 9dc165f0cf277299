//! Discovery: what the network is, read from the kernel over rtnetlink (never by running `ip`).
//!
//! [`discover`] returns a [`Network`]: every interface with its on-link prefixes, and the
//! devices of the default IPv4 and IPv6 routes in the main table (lowest metric wins). It works
//! on IPv4-only hosts, IPv6-only hosts, and with IPv6 disabled in the kernel.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

pub use crate::nft::ruleset::Prefix;

/// The private ranges that `--lan private` trusts: RFC 1918, IPv4 link-local, IPv6 link-local
/// and unique local addresses.
pub fn private_ranges() -> [Prefix; 6] {
    [
        Prefix::new(Ipv4Addr::new(10, 0, 0, 0).into(), 8),
        Prefix::new(Ipv4Addr::new(172, 16, 0, 0).into(), 12),
        Prefix::new(Ipv4Addr::new(192, 168, 0, 0).into(), 16),
        Prefix::new(Ipv4Addr::new(169, 254, 0, 0).into(), 16),
        Prefix::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).into(), 10),
        Prefix::new(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0).into(), 7),
    ]
}

/// One network interface and the prefixes of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel name (`eth0`).
    pub name: String,
    /// Kernel index.
    pub index: u32,
    /// On-link prefixes, sorted, without duplicates, in the order IPv4 first. Empty for a
    /// port of a bridge: packets are routed through the bridge, never through its ports.
    pub prefixes: Vec<Prefix>,
}

/// What the network is: the input of the planner next to the policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// Every interface, sorted by index.
    pub interfaces: Vec<Interface>,
    /// The device of the default IPv4 route with the lowest metric in the main table.
    pub default_v4: Option<String>,
    /// The device of the default IPv6 route with the lowest metric in the main table.
    pub default_v6: Option<String>,
    /// Whether the kernel has IPv6 (false with `ipv6.disable=1`).
    pub ipv6: bool,
}

impl Network {
    /// Finds an interface by name.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// Why the network could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The rtnetlink socket could not be opened.
    #[error("could not open an rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused or failed a request.
    #[error("could not read the {what} from the kernel: {source}")]
    Request {
        /// What was being read.
        what: &'static str,
        /// The rtnetlink error.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Reads the network from the kernel of the calling thread's network namespace.
pub async fn discover() -> Result<Network, DiscoveryError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(DiscoveryError::Socket)?;
    let conn_task = tokio::spawn(connection);
    let result = discover_with(&handle).await;
    conn_task.abort();
    result
}

async fn discover_with(handle: &rtnetlink::Handle) -> Result<Network, DiscoveryError> {
    let mut interfaces = Vec::new();
    // (port, bridge) pairs and the bridges' indices: a bridge port's own addresses (the
    // IPv6 link-local address of every container's veth or VM's tap) are never used to
    // route, the bridge's are, so ports get no prefixes (and no rules that go stale each
    // time a container starts or stops).
    let mut controllers: Vec<(u32, u32)> = Vec::new();
    let mut bridges: Vec<u32> = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(link) = links
        .try_next()
        .await
        .map_err(|source| DiscoveryError::Request {
            what: "interfaces",
            source,
        })?
    {
        let name = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        for a in &link.attributes {
            match a {
                LinkAttribute::Controller(c) => controllers.push((link.header.index, *c)),
                LinkAttribute::LinkInfo(info)
                    if info.contains(&LinkInfo::Kind(InfoKind::Bridge)) =>
                {
                    bridges.push(link.header.index)
                }
                _ => {}
            }
        }
        if let Some(name) = name {
            interfaces.push(Interface {
                name,
                index: link.header.index,
                prefixes: Vec::new(),
            });
        }
    }
    let bridge_ports: Vec<u32> = controllers
        .iter()
        .filter(|(_, c)| bridges.contains(c))
        .map(|(port, _)| *port)
        .collect();
    let mut addrs = handle.address().get().execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|source| DiscoveryError::Request {
            what: "addresses",
            source,
        })?
    {
        // On point-to-point links `Address` is the peer; `Local` is ours.
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if bridge_ports.contains(&msg.header.index) {
            continue;
        }
        if let (Some(addr), Some(iface)) = (
            addr,
            interfaces.iter_mut().find(|i| i.index == msg.header.index),
        ) {
            iface
                .prefixes
                .push(Prefix::new(addr, msg.header.prefix_len));
        }
    }
    for iface in &mut interfaces {
        iface.prefixes.sort();
        iface.prefixes.dedup();
    }
    interfaces.sort_by_key(|i| i.index);

    let v4 = routes(handle, RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
    let ipv6_present = std::path::Path::new("/proc/sys/net/ipv6").exists();
    let v6 = if ipv6_present {
        match routes(handle, RouteMessageBuilder::<Ipv6Addr>::new().build()).await {
            Ok(r) => Some(r),
            Err(DiscoveryError::Request {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            }) if e.raw_code() == -libc::EAFNOSUPPORT || e.raw_code() == -libc::EOPNOTSUPP => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let name_of = |idx: Option<u32>| {
        idx.and_then(|i| {
            interfaces
                .iter()
                .find(|x| x.index == i)
                .map(|x| x.name.clone())
        })
    };
    Ok(Network {
        default_v4: name_of(default_route_oif(&v4)),
        default_v6: name_of(v6.as_deref().and_then(default_route_oif)),
        ipv6: v6.is_some(),
        interfaces,
    })
}

async fn routes(
    handle: &rtnetlink::Handle,
    req: RouteMessage,
) -> Result<Vec<RouteMessage>, DiscoveryError> {
    handle
        .route()
        .get(req)
        .execute()
        .try_collect()
        .await
        .map_err(|source| DiscoveryError::Request {
            what: "routes",
            source,
        })
}

/// Picks the output interface of the default route with the lowest metric in the main table.
/// Pure: unit-tested with synthetic messages.
pub fn default_route_oif(routes: &[RouteMessage]) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && r.header.kind == RouteType::Unicast)
        .filter(|r| {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            table == u32::from(RouteHeader::RT_TABLE_MAIN)
        })
        .filter_map(|r| {
            let metric = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
                _ => None,
            })?;
            Some((metric, oif))
        })
        .min()
        .map(|(_, oif)| oif)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix_len: u8, table: u8, metric: u32, oif: u32) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.destination_prefix_length = prefix_len;
        m.header.table = table;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Priority(metric));
        m.attributes.push(RouteAttribute::Oif(oif));
        m
    }

    #[test]
    fn lowest_metric_default_route_in_main_wins() {
        let main = RouteHeader::RT_TABLE_MAIN;
        let routes = vec![
            route(24, main, 0, 9),
            route(0, main, 600, 3),
            route(0, main, 100, 4),
            route(0, 200, 1, 5),
        ];
        assert_eq!(default_route_oif(&routes), Some(4));
        assert_eq!(default_route_oif(&routes[..1]), None);
    }

    #[test]
    fn prefixes_are_masked_and_printed() {
        let p = Prefix::new("192.168.1.2".parse().unwrap(), 24);
        assert_eq!(p.to_string(), "192.168.1.0/24");
        assert_eq!(
            Prefix::new("fe80::1:2".parse().unwrap(), 64).to_string(),
            "fe80::/64"
        );
        assert_eq!(
            Prefix::new("10.42.0.1".parse().unwrap(), 32).to_string(),
            "10.42.0.1"
        );
        let ten = Prefix::new("10.0.0.0".parse().unwrap(), 8);
        assert!(!ten.contains(&p) && ten.contains(&Prefix::new("10.1.2.3".parse().unwrap(), 16)));
    }
}
