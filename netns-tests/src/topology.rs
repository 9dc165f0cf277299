//! The topology builder: a client namespace and, around it, a LAN router, an "internet"
//! namespace with hosts and gateways, optionally a VPN side reached through a simulated
//! tunnel and a second uplink with its own router. Nothing is ever linked to the machine's
//! own namespace.
//!
//! ```text
//!                      eth0 192.168.1.2  lan0 192.168.1.1
//!   [client] ───────────────────────── [router] wan0 192.0.2.2 ── r1 192.0.2.1 ─┐
//!     │  eth1 192.168.2.2   lan0 192.168.2.1                                      │
//!     ├───────────────────────────── [router2] wan0 192.0.2.10 ── r2 192.0.2.9 ─┤ [internet]
//!     │  tun0 10.42.0.2     tunpeer 10.42.0.1                                     │  203.0.113.10
//!     └───────────────────────────── [vpn] wan0 192.0.2.6 ─────── vpn 192.0.2.5 ─┘  198.51.100.x
//!                                     lo: 10.41.0.1                                 2001:db8:...
//! ```
//!
//! IPv6: fd00:1::/64 on the LAN, fd00:2::/64 on the second uplink, 2001:db8:ffff:N::/64 on the
//! transfer links, hosts in 2001:db8::/32. The tunnel carries IPv4 only, as configured by a
//! typical OpenVPN server pushing `redirect-gateway def1`.

use std::net::IpAddr;

use crate::addr::{self, *};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// What to build; see [`Topology::builder`].
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    tunnel: bool,
    second_uplink: bool,
    gateways: Vec<IpAddr>,
    hosts: Vec<IpAddr>,
}

/// A built topology. Dropping it deletes every namespace (and so every link) it created.
#[derive(Debug)]
pub struct Topology {
    // Field order is drop order: the client goes first.
    client: Netns,
    router: Netns,
    internet: Netns,
    vpn: Option<Netns>,
    router2: Option<Netns>,
    gateways: Vec<IpAddr>,
    tunnel_up: bool,
}

impl Topology {
    /// A builder for a client, LAN router and internet, with [`GATEWAY_V4`] as gateway and
    /// [`INTERNET_HOST_V4`], [`INTERNET_HOST_V6`] and [`OTHER_RESOLVER_V4`] as hosts.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            tunnel: false,
            second_uplink: false,
            gateways: vec![IpAddr::V4(GATEWAY_V4)],
            hosts: vec![
                IpAddr::V4(INTERNET_HOST_V4),
                IpAddr::V6(INTERNET_HOST_V6),
                IpAddr::V4(OTHER_RESOLVER_V4),
            ],
        }
    }
}

impl TopologyBuilder {
    /// Adds the VPN side and the simulated tunnel `tun0` in the client, up, with
    /// `0.0.0.0/1` and `128.0.0.0/1` via the tunnel and host routes to the IPv4 gateways
    /// via the LAN router.
    pub fn tunnel(mut self, yes: bool) -> Self {
        self.tunnel = yes;
        self
    }

    /// Adds a second uplink `eth1` with its own router, and a backup default route through
    /// it (metric 600, as a second wired or wireless link would have).
    pub fn second_uplink(mut self, yes: bool) -> Self {
        self.second_uplink = yes;
        self
    }

    /// Replaces the gateway list (addresses that exist on the internet side).
    pub fn gateways(mut self, gws: &[IpAddr]) -> Self {
        self.gateways = gws.to_vec();
        self
    }

    /// Adds extra internet hosts.
    pub fn hosts(mut self, hosts: &[IpAddr]) -> Self {
        self.hosts.extend_from_slice(hosts);
        self
    }

    /// Creates the namespaces, links, addresses and routes.
    pub fn build(self) -> Result<Topology> {
        for ip in self.gateways.iter().chain(&self.hosts) {
            if !addr::is_harness_address(*ip) {
                return Err(Error::new(format!(
                    "{ip} is outside the documentation/private ranges the harness may use"
                )));
            }
        }
        let client = Netns::create("client")?;
        let router = Netns::create("router")?;
        let internet = Netns::create("inet")?;
        let vpn = if self.tunnel {
            Some(Netns::create("vpn")?)
        } else {
            None
        };
        let router2 = if self.second_uplink {
            Some(Netns::create("router2")?)
        } else {
            None
        };
        let topo = Topology {
            client,
            router,
            internet,
            vpn,
            router2,
            gateways: self.gateways.clone(),
            tunnel_up: self.tunnel,
        };
        topo.wire(&self)?;
        Ok(topo)
    }
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .map(|_| ())
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const FORWARDING: [(&str, &str); 2] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
];

impl Topology {
    fn wire(&self, b: &TopologyBuilder) -> Result<()> {
        let (c, r, i) = (&self.client, &self.router, &self.internet);
        veth(c, "eth0", r, "lan0")?;
        veth(r, "wan0", i, "r1")?;
        r.sysctl(&FORWARDING)?;
        i.sysctl(&FORWARDING)?;

        let mut cl = lines(&[
            "link set eth0 up",
            "addr add 192.168.1.2/24 dev eth0",
            "addr add fd00:1::2/64 dev eth0 nodad",
            "route add default via 192.168.1.1 dev eth0",
            "route add default via fd00:1::1 dev eth0",
        ]);
        r.ip_batch(&lines(&[
            "link set lan0 up",
            "link set wan0 up",
            "addr add 192.168.1.1/24 dev lan0",
            "addr add fd00:1::1/64 dev lan0 nodad",
            "addr add 192.0.2.2/30 dev wan0",
            "addr add 2001:db8:ffff:1::2/64 dev wan0 nodad",
            "route add default via 192.0.2.1",
            "route add default via 2001:db8:ffff:1::1",
        ]))?;
        let mut il = lines(&[
            "link set r1 up",
            "addr add 192.0.2.1/30 dev r1",
            "addr add 2001:db8:ffff:1::1/64 dev r1 nodad",
            "route add 192.168.1.0/24 via 192.0.2.2",
            "route add fd00:1::/64 via 2001:db8:ffff:1::2",
        ]);
        let mut seen = Vec::new();
        for ip in b.hosts.iter().chain(&b.gateways) {
            if seen.contains(ip) {
                continue;
            }
            seen.push(*ip);
            il.push(match ip {
                IpAddr::V4(v4) => format!("addr add {v4}/32 dev lo"),
                IpAddr::V6(v6) => format!("addr add {v6}/128 dev lo nodad"),
            });
        }

        if let Some(v) = &self.vpn {
            veth(c, "tun0", v, "tunpeer")?;
            veth(v, "wan0", i, "vpn")?;
            v.sysctl(&FORWARDING)?;
            v.ip_batch(&lines(&[
                "link set tunpeer up",
                "link set wan0 up",
                "addr add 10.42.0.1/24 dev tunpeer",
                "addr add 10.41.0.1/32 dev lo",
                "addr add 192.0.2.6/30 dev wan0",
                "route add default via 192.0.2.5",
            ]))?;
            il.extend(lines(&[
                "link set vpn up",
                "addr add 192.0.2.5/30 dev vpn",
                "route add 10.42.0.0/24 via 192.0.2.6",
            ]));
            cl.extend(lines(&["addr add 10.42.0.2/24 dev tun0"]));
            for gw in &self.gateways {
                if let IpAddr::V4(g) = gw {
                    cl.push(format!("route add {g}/32 via 192.168.1.1 dev eth0"));
                }
            }
        }
        if let Some(r2) = &self.router2 {
            veth(c, "eth1", r2, "lan0")?;
            veth(r2, "wan0", i, "r2")?;
            r2.sysctl(&FORWARDING)?;
            r2.ip_batch(&lines(&[
                "link set lan0 up",
                "link set wan0 up",
                "addr add 192.168.2.1/24 dev lan0",
                "addr add fd00:2::1/64 dev lan0 nodad",
                "addr add 192.0.2.10/30 dev wan0",
                "addr add 2001:db8:ffff:2::2/64 dev wan0 nodad",
                "route add default via 192.0.2.9",
                "route add default via 2001:db8:ffff:2::1",
            ]))?;
            il.extend(lines(&[
                "link set r2 up",
                "addr add 192.0.2.9/30 dev r2",
                "addr add 2001:db8:ffff:2::1/64 dev r2 nodad",
                "route add 192.168.2.0/24 via 192.0.2.10",
                "route add fd00:2::/64 via 2001:db8:ffff:2::2",
            ]));
            cl.extend(lines(&[
                "link set eth1 up",
                "addr add 192.168.2.2/24 dev eth1",
                "addr add fd00:2::2/64 dev eth1 nodad",
                "route add default via 192.168.2.1 dev eth1 metric 600",
                "route add default via fd00:2::1 dev eth1 metric 600",
            ]));
        }
        i.ip_batch(&il)?;
        c.ip_batch(&cl)?;
        if self.vpn.is_some() {
            self.tunnel_up()?;
        }
        Ok(())
    }

    /// The client namespace (where the kill switch runs).
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The LAN router.
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The "internet": hosts, gateways and the other resolver live on its loopback.
    pub fn internet(&self) -> &Netns {
        &self.internet
    }

    /// The VPN side (tunnel peer, resolvers 10.42.0.1 and 10.41.0.1), when built with
    /// [`TopologyBuilder::tunnel`].
    pub fn vpn(&self) -> Result<&Netns> {
        self.vpn
            .as_ref()
            .ok_or_else(|| Error::new("topology built without a tunnel"))
    }

    /// The second uplink's router, when built with [`TopologyBuilder::second_uplink`].
    pub fn router2(&self) -> Result<&Netns> {
        self.router2
            .as_ref()
            .ok_or_else(|| Error::new("topology built without a second uplink"))
    }

    /// The gateways given to the builder.
    pub fn gateways(&self) -> &[IpAddr] {
        &self.gateways
    }

    /// Names of every namespace of this topology.
    pub fn namespace_names(&self) -> Vec<String> {
        [
            Some(&self.client),
            Some(&self.router),
            Some(&self.internet),
            self.vpn.as_ref(),
            self.router2.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|n| n.name().to_string())
        .collect()
    }

    /// Whether the tunnel is currently up.
    pub fn is_tunnel_up(&self) -> bool {
        self.tunnel_up
    }

    /// Brings the tunnel up and installs the routes OpenVPN would (`0.0.0.0/1` and
    /// `128.0.0.0/1` via 10.42.0.1 dev tun0).
    pub fn tunnel_up(&self) -> Result<()> {
        self.vpn()?;
        self.client.ip_batch(&lines(&[
            "link set tun0 up",
            "route replace 0.0.0.0/1 via 10.42.0.1 dev tun0",
            "route replace 128.0.0.0/1 via 10.42.0.1 dev tun0",
        ]))?;
        Ok(())
    }

    /// Takes the tunnel down: `tun0` down, so its routes disappear (as when OpenVPN stops).
    pub fn tunnel_down(&self) -> Result<()> {
        self.vpn()?;
        self.client.ip(&["link", "set", "tun0", "down"]).map(|_| ())
    }

    /// Moves the client's IPv4 and IPv6 default routes to the second uplink.
    pub fn move_default_route_to_second_uplink(&self) -> Result<()> {
        self.router2()?;
        self.client.ip_batch(&lines(&[
            "route replace default via 192.168.2.1 dev eth1",
            "route replace default via fd00:2::1 dev eth1",
        ]))
    }

    /// Routes one destination through the second uplink (a host route).
    pub fn route_via_second_uplink(&self, dst: IpAddr) -> Result<()> {
        self.router2()?;
        let line = match dst {
            IpAddr::V4(v4) => format!("route replace {v4}/32 via 192.168.2.1 dev eth1"),
            IpAddr::V6(v6) => format!("route replace {v6}/128 via fd00:2::1 dev eth1"),
        };
        self.client.ip_batch(&[line])
    }

    /// The link-local address of interface `ifname` in namespace `ns`.
    pub fn link_local(ns: &Netns, ifname: &str) -> Result<std::net::Ipv6Addr> {
        let out = ns.ip(&["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"])?;
        out.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Error::new(format!("no link-local address on {ifname}: {out}")))
    }
}
