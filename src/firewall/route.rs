//! Route lookups, as `ip route get` does them but over rtnetlink (`RTM_GETROUTE`, never by
//! running `ip`): where the kernel of the calling thread's namespace would send a packet.
//! [`KernelRoutes`] answers the evaluator's routing questions ([`crate::nft::eval::Routing`]).

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

use crate::discovery::{DiscoveryError, Network};
use crate::nft::eval::{Route, RouteQuery, Routing};

/// The kernel's routing table of the calling thread's namespace, asked one packet at a time.
pub struct KernelRoutes {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    links: Vec<(u32, String)>,
}

impl KernelRoutes {
    /// Opens an rtnetlink socket in the calling thread's namespace. `net` names the
    /// interfaces (as [`crate::discovery::discover`] read them).
    pub fn new(net: &Network) -> Result<KernelRoutes, DiscoveryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(DiscoveryError::Socket)?;
        let (handle, task) = rt.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(DiscoveryError::Socket)?;
            Ok::<_, DiscoveryError>((handle, tokio::spawn(connection)))
        })?;
        // The connection runs whenever the runtime is driven; it ends with the runtime.
        drop(task);
        Ok(KernelRoutes {
            rt,
            handle,
            links: net
                .interfaces
                .iter()
                .map(|i| (i.index, i.name.clone()))
                .collect(),
        })
    }

    /// Reads the network (as [`crate::discovery::discover`] does) and opens the lookups, on a
    /// runtime of its own: call it outside any async context.
    pub fn open() -> Result<(KernelRoutes, Network), DiscoveryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(DiscoveryError::Socket)?;
        let net = rt.block_on(crate::discovery::discover())?;
        drop(rt);
        Ok((KernelRoutes::new(&net)?, net))
    }

    fn index(&self, name: &str) -> Result<u32, String> {
        self.links
            .iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| *i)
            .ok_or_else(|| format!("there is no interface {name}"))
    }

    fn name(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| format!("if{index}"))
    }

    /// Looks up one route. `Ok(None)`: no route (unreachable, prohibited, blackholed).
    pub fn lookup(&self, q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
        let full = if q.dst.is_ipv4() { 32 } else { 128 };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(q.dst, full)
            .map_err(|e| e.to_string())?;
        if let Some(src) = q.src {
            b = b.source_prefix(src, full).map_err(|e| e.to_string())?;
        }
        if let Some(dev) = q.oif {
            b = b.output_interface(self.index(dev)?);
        }
        if let Some(dev) = q.iif {
            b = b.input_interface(self.index(dev)?);
        }
        let msg = b.build();
        let answer = self.rt.block_on(async {
            let mut stream = self.handle.route().get(msg).execute();
            stream.try_next().await
        });
        match answer {
            // Multicast that comes in is not routed on (this host does no multicast routing):
            // a member gets it delivered, nobody else forwards it.
            Ok(Some(m)) if q.iif.is_some() && m.header.kind == RouteType::Multicast => Ok(None),
            Ok(Some(m)) => Ok(self.route_of(&m)),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e))
                if [
                    libc::ENETUNREACH,
                    libc::EHOSTUNREACH,
                    libc::EACCES,
                    libc::EINVAL,
                    libc::EPERM,
                    libc::EXDEV,
                ]
                .contains(&-e.raw_code()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn route_of(&self, m: &RouteMessage) -> Option<Route> {
        match m.header.kind {
            RouteType::Unreachable | RouteType::Prohibit | RouteType::BlackHole => return None,
            _ => {}
        }
        let oif = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })?;
        let src = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        });
        Some(Route {
            oif: self.name(oif),
            local: m.header.kind == RouteType::Local,
            src,
        })
    }
}

impl Routing for KernelRoutes {
    fn route(&self, q: &RouteQuery<'_>) -> Result<Option<Route>, String> {
        self.lookup(q)
    }
}
