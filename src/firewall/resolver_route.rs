//! Where the VPN resolver is routed, and what that means for DNS.
//!
//! The firewall rewrites every IPv4 DNS query to the resolver and lets the rewritten queries
//! leave only through the tunnel (or loopback). So when the kernel routes the resolver's
//! address anywhere else — the tunnel is down, a host route sends it via the uplink, or the LAN
//! uses the resolver's own range (NetworkManager's shared networks are 10.42.0.0/24) — DNS
//! fails, closed. `firewall isup` stays 0 (the firewall is doing its job) but says why DNS
//! does not work. The lookup is a route query over rtnetlink (`RTM_GETROUTE`, what
//! `ip route get` asks), never part of the plan or its fingerprint: routes change whenever the
//! tunnel goes up or down, and the rules must not.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::RouteMessageBuilder;

use crate::discovery::DiscoveryError;
use crate::nft::ruleset::IfPattern;

/// Where the kernel sends packets for the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverRoute {
    /// Out through this interface (`lo` when the resolver is one of the host's own addresses).
    Device(String),
    /// Nowhere: no route, or an unreachable, prohibit or blackhole route; the kernel's reason.
    Unroutable(String),
}

/// What the status line adds about DNS, or `None` when the rewritten queries can reach the
/// resolver (it is routed through the tunnel, or it is a loopback address such as a local
/// DNS proxy given with `--resolver`). Pure.
pub fn dns_warning(
    resolver: Ipv4Addr,
    route: &ResolverRoute,
    tunnel: &IfPattern,
) -> Option<String> {
    match route {
        ResolverRoute::Device(dev) if tunnel.matches(dev) => None,
        ResolverRoute::Device(dev) if dev == "lo" => {
            if resolver.is_loopback() {
                None
            } else {
                Some(format!(
                    "DNS goes to this host, not the VPN: {resolver} is one of its own addresses"
                ))
            }
        }
        ResolverRoute::Device(dev) => Some(format!(
            "DNS will fail: {resolver} is routed via {dev}, not the tunnel"
        )),
        ResolverRoute::Unroutable(why) => {
            Some(format!("DNS will fail: {resolver} has no route ({why})"))
        }
    }
}

/// Asks the kernel of the calling thread's network namespace where it routes `resolver`.
pub async fn lookup(resolver: Ipv4Addr) -> Result<ResolverRoute, DiscoveryError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(DiscoveryError::Socket)?;
    let conn_task = tokio::spawn(connection);
    let result = lookup_with(&handle, resolver).await;
    conn_task.abort();
    result
}

async fn lookup_with(
    handle: &rtnetlink::Handle,
    resolver: Ipv4Addr,
) -> Result<ResolverRoute, DiscoveryError> {
    // With a destination the request is a lookup (`ip route get`), not a dump.
    let req = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(resolver, 32)
        .build();
    let answer = handle.route().get(req).execute().try_next().await;
    let oif = match answer {
        Ok(Some(msg)) => msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }),
        Ok(None) => None,
        Err(rtnetlink::Error::NetlinkError(e)) => {
            let why = match e.raw_code() {
                0 => "no answer".to_string(),
                code => {
                    let text = std::io::Error::from_raw_os_error(-code).to_string();
                    // "Network is unreachable (os error 101)" -> "Network is unreachable"
                    match text.split_once(" (os error") {
                        Some((words, _)) => words.to_string(),
                        None => text,
                    }
                }
            };
            return Ok(ResolverRoute::Unroutable(why));
        }
        Err(source) => {
            return Err(DiscoveryError::Request {
                what: "route to the resolver",
                source: std::io::Error::other(source),
            })
        }
    };
    let Some(oif) = oif else {
        return Ok(ResolverRoute::Unroutable("no output interface".into()));
    };
    let mut links = handle.link().get().match_index(oif).execute();
    let link = links
        .try_next()
        .await
        .map_err(|source| DiscoveryError::Request {
            what: "interface of the route to the resolver",
            source: std::io::Error::other(source),
        })?;
    let name = link.and_then(|l| {
        l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        })
    });
    Ok(ResolverRoute::Device(
        name.unwrap_or_else(|| format!("interface {oif}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tun() -> IfPattern {
        "tun*".parse().unwrap()
    }

    const R: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);

    #[test]
    fn through_the_tunnel_says_nothing() {
        assert_eq!(
            dns_warning(R, &ResolverRoute::Device("tun0".into()), &tun()),
            None
        );
        let wg: IfPattern = "wg0".parse().unwrap();
        assert_eq!(
            dns_warning(R, &ResolverRoute::Device("wg0".into()), &wg),
            None
        );
    }

    #[test]
    fn elsewhere_says_where_and_why_dns_fails() {
        assert_eq!(
            dns_warning(R, &ResolverRoute::Device("wlan0".into()), &tun()).as_deref(),
            Some("DNS will fail: 10.42.0.1 is routed via wlan0, not the tunnel")
        );
        let w = dns_warning(
            R,
            &ResolverRoute::Unroutable("Network is unreachable".into()),
            &tun(),
        )
        .unwrap();
        assert_eq!(
            w,
            "DNS will fail: 10.42.0.1 has no route (Network is unreachable)"
        );
        let w = dns_warning(R, &ResolverRoute::Device("lo".into()), &tun()).unwrap();
        assert!(w.contains("one of its own addresses"), "{w}");
        assert_eq!(
            dns_warning(
                Ipv4Addr::LOCALHOST,
                &ResolverRoute::Device("lo".into()),
                &tun()
            ),
            None
        );
    }
}
