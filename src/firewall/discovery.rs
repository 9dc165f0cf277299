//! Discovery: what the network is, read from the kernel over rtnetlink (never by running `ip`).
//!
//! [`discover`] returns a [`Network`]: every interface with its on-link prefixes, and the
//! devices of the default IPv4 and IPv6 routes in the main table (lowest metric wins). It works
//! on IPv4-only hosts, IPv6-only hosts, and with IPv6 disabled in the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nft::netlink;
use crate::sys::netlink::{NetlinkSocket, NETLINK_ROUTE};

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
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the network from the kernel of the calling thread's network namespace.
///
/// Kept `async` for callers that await it; it does its work at once, on a blocking socket
/// (three dumps, well under a millisecond), and never waits for a wakeup.
pub async fn discover() -> Result<Network, DiscoveryError> {
    discover_now()
}

/// [`discover`] for callers without an async runtime: one rtnetlink socket, three dumps
/// (links, addresses, routes of both families).
pub fn discover_now() -> Result<Network, DiscoveryError> {
    let mut rt = Rtnl::open()?;
    let mut interfaces = Vec::new();
    // (port, bridge) pairs and the bridges' indices: a bridge port's own addresses (the
    // IPv6 link-local address of every container's veth or VM's tap) are never used to
    // route, the bridge's are, so ports get no prefixes (and no rules that go stale each
    // time a container starts or stops).
    let mut controllers: Vec<(u32, u32)> = Vec::new();
    let mut bridges: Vec<u32> = Vec::new();
    rt.dump(RTM_GETLINK, &[0; 16], &[], "interfaces", &mut |msg| {
        if msg.ty != RTM_NEWLINK || msg.payload.len() < 16 {
            return;
        }
        let index = i32::from_ne_bytes([
            msg.payload[4],
            msg.payload[5],
            msg.payload[6],
            msg.payload[7],
        ]);
        const IFLA_IFNAME: u16 = 3;
        const IFLA_MASTER: u16 = 10;
        const IFLA_LINKINFO: u16 = 18;
        const IFLA_INFO_KIND: u16 = 1;
        let attrs = netlink::attrs(&msg.payload[16..]);
        if let Some(c) = netlink::find(&attrs, IFLA_MASTER)
            .and_then(|a| a.data.get(..4))
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        {
            controllers.push((index as u32, c));
        }
        let is_bridge = netlink::find(&attrs, IFLA_LINKINFO).is_some_and(|info| {
            netlink::find(&info.nested(), IFLA_INFO_KIND)
                .is_some_and(|k| k.data.split(|b| *b == 0).next() == Some(b"bridge".as_slice()))
        });
        if is_bridge {
            bridges.push(index as u32);
        }
        if let Some(name) = netlink::find(&attrs, IFLA_IFNAME).and_then(|a| a.str()) {
            interfaces.push(Interface {
                name: name.to_string(),
                index: index as u32,
                prefixes: Vec::new(),
            });
        }
    })?;
    let bridge_ports: Vec<u32> = controllers
        .iter()
        .filter(|(_, c)| bridges.contains(c))
        .map(|(port, _)| *port)
        .collect();
    rt.dump(RTM_GETADDR, &[0; 8], &[], "addresses", &mut |msg| {
        if msg.ty != RTM_NEWADDR || msg.payload.len() < 8 {
            return;
        }
        let p = msg.payload;
        let (family, prefix_len) = (p[0], p[1]);
        let index = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
        if bridge_ports.contains(&index) {
            return;
        }
        const IFA_ADDRESS: u16 = 1;
        const IFA_LOCAL: u16 = 2;
        let attrs = netlink::attrs(&p[8..]);
        // On point-to-point links `IFA_ADDRESS` is the peer; `IFA_LOCAL` is ours.
        let addr = netlink::find(&attrs, IFA_LOCAL)
            .or_else(|| netlink::find(&attrs, IFA_ADDRESS))
            .and_then(|a| ip_of(family, a.data));
        if let (Some(addr), Some(iface)) = (addr, interfaces.iter_mut().find(|i| i.index == index))
        {
            iface.prefixes.push(Prefix::new(addr, prefix_len));
        }
    })?;
    for iface in &mut interfaces {
        iface.prefixes.sort();
        iface.prefixes.dedup();
    }
    interfaces.sort_by_key(|i| i.index);

    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    rt.dump(RTM_GETROUTE, &[0; 12], &[], "routes", &mut |msg| {
        if msg.ty != RTM_NEWROUTE {
            return;
        }
        if let Some((family, route)) = parse_route(msg.payload) {
            match i32::from(family) {
                libc::AF_INET => v4.push(route),
                libc::AF_INET6 => v6.push(route),
                _ => {}
            }
        }
    })?;
    let ipv6 = std::path::Path::new("/proc/sys/net/ipv6").exists();
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
        default_v6: if ipv6 {
            name_of(default_route_oif(&v6))
        } else {
            None
        },
        ipv6,
        interfaces,
    })
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

fn ip_of(family: u8, data: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), data.len()) {
        (libc::AF_INET, 4) => <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
        (libc::AF_INET6, 16) => <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A route, as far as the choice of the default device needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Route {
    /// The destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// The routing table (`RTA_TABLE`, else the header's).
    pub table: u32,
    /// `rtm_type` (`RTN_UNICAST` is 1).
    pub kind: u8,
    /// The metric (`RTA_PRIORITY`, 0 when absent).
    pub metric: u32,
    /// The output interface (`RTA_OIF`, or the first hop of `RTA_MULTIPATH`).
    pub oif: Option<u32>,
}

/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;

/// A route message's family and the route it describes.
fn parse_route(p: &[u8]) -> Option<(u8, Route)> {
    let h = p.get(..12)?;
    const RTA_OIF: u16 = 4;
    const RTA_PRIORITY: u16 = 6;
    const RTA_MULTIPATH: u16 = 9;
    const RTA_TABLE: u16 = 15;
    let attrs = netlink::attrs(&p[12..]);
    let u32_of = |ty| {
        netlink::find(&attrs, ty)
            .and_then(|a| a.data.get(..4))
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    // RTA_MULTIPATH holds `rtnexthop`s: length (2), flags (1), hops (1), ifindex (4), ...
    let first_hop = || {
        netlink::find(&attrs, RTA_MULTIPATH)
            .and_then(|a| a.data.get(4..8))
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some((
        h[0],
        Route {
            prefix_len: h[1],
            table: u32_of(RTA_TABLE).unwrap_or(u32::from(h[4])),
            kind: h[7],
            metric: u32_of(RTA_PRIORITY).unwrap_or(0),
            oif: u32_of(RTA_OIF).or_else(first_hop),
        },
    ))
}

/// Picks the output interface of the default route with the lowest metric in the main table.
/// Pure: unit-tested with synthetic routes.
pub fn default_route_oif(routes: &[Route]) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.prefix_len == 0 && r.kind == RTN_UNICAST && r.table == RT_TABLE_MAIN)
        .filter_map(|r| Some((r.metric, r.oif?)))
        .min()
        .map(|(_, oif)| oif)
}

/// One rtnetlink socket for discovery's dumps.
struct Rtnl {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl, DiscoveryError> {
        let socket = NetlinkSocket::open(NETLINK_ROUTE).map_err(DiscoveryError::Socket)?;
        crate::sys::set_receive_timeout(&socket, 30).map_err(DiscoveryError::Socket)?;
        Ok(Rtnl {
            socket,
            buf: Vec::with_capacity(64 << 10),
            seq: 0,
        })
    }

    /// Sends a dump request of type `ty` with header `header` and `attrs`, and hands every
    /// answer to `on_msg` until the end of the dump.
    fn dump(
        &mut self,
        ty: u16,
        header: &[u8],
        attrs: &[(u16, &[u8])],
        what: &'static str,
        on_msg: &mut dyn FnMut(&netlink::Message<'_>),
    ) -> Result<(), DiscoveryError> {
        const NLM_F_REQUEST: u16 = 0x1;
        const NLM_F_DUMP: u16 = 0x300;
        let fail = |source| DiscoveryError::Request { what, source };
        self.seq += 1;
        let req = netlink::request(ty, NLM_F_REQUEST | NLM_F_DUMP, self.seq, header, attrs);
        self.socket.send(&[&req]).map_err(fail)?;
        loop {
            let n = self.socket.recv(&mut self.buf).map_err(fail)?;
            if n > self.buf.len() {
                return Err(fail(std::io::Error::other(format!(
                    "an answer of {n} bytes did not fit the buffer"
                ))));
            }
            for msg in netlink::messages(&self.buf) {
                if msg.seq != self.seq {
                    continue;
                }
                match msg.ty {
                    netlink::NLMSG_DONE => return Ok(()),
                    netlink::NLMSG_ERROR => {
                        return match msg.error_code() {
                            Some(0) | None => Ok(()),
                            Some(e) => Err(fail(std::io::Error::from_raw_os_error(-e))),
                        }
                    }
                    _ => on_msg(&msg),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix_len: u8, table: u32, metric: u32, oif: u32) -> Route {
        Route {
            prefix_len,
            table,
            kind: RTN_UNICAST,
            metric,
            oif: Some(oif),
        }
    }

    #[test]
    fn routes_are_parsed_from_the_kernels_messages() {
        // rtmsg: AF_INET, /0, table main (254), protocol, scope, type unicast; then
        // RTA_PRIORITY 100 and RTA_OIF 4.
        let mut m = vec![2u8, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
        for (ty, v) in [(6u16, 100u32), (4, 4)] {
            m.extend_from_slice(&8u16.to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(&v.to_ne_bytes());
        }
        let (family, r) = parse_route(&m).expect("route");
        assert_eq!(i32::from(family), libc::AF_INET);
        assert_eq!(r, route(0, RT_TABLE_MAIN, 100, 4));
        assert_eq!(default_route_oif(&[r]), Some(4));
        assert!(parse_route(&m[..8]).is_none());
    }

    #[test]
    fn lowest_metric_default_route_in_main_wins() {
        let main = RT_TABLE_MAIN;
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
