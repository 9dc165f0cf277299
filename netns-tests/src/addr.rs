//! The addresses of the standard topology. Everything "on the internet" uses documentation
//! prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32); the LANs use
//! 192.168.x and fd00::/8; the VPN side holds the resolvers 10.42.0.1 and 10.41.0.1.
//! None of these exist outside the harness's namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Client's address on the LAN (`eth0`), /24.
pub const CLIENT_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// LAN router, the client's default gateway, /24.
pub const ROUTER_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// Client's ULA on the LAN, /64.
pub const CLIENT_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
/// LAN router's ULA, /64.
pub const ROUTER_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);

/// Client's address on the second uplink (`eth1`), /24.
pub const CLIENT_LAN2_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
/// Second router, /24.
pub const ROUTER2_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
/// Client's ULA on the second uplink, /64.
pub const CLIENT_LAN2_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);
/// Second router's ULA, /64.
pub const ROUTER2_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);

/// An internet host that is not a gateway.
pub const INTERNET_HOST_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// An IPv6 internet host that is not a gateway.
pub const INTERNET_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// A resolver on the internet that is not the VPN's (the target of "leaky" DNS queries).
pub const OTHER_RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);

/// The first default gateway (more: [`gateway_v4`]).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// An IPv6 gateway.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// Client's address on the simulated tunnel `tun0`, /24.
pub const CLIENT_TUN_V4: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);
/// The VPN resolver (default), also the tunnel peer.
pub const VPN_RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
/// The VPN resolver used with `--tcp`.
pub const VPN_RESOLVER_TCP: Ipv4Addr = Ipv4Addr::new(10, 41, 0, 1);

/// Docker's default bridge in the client (`docker0`), /16.
pub const DOCKER_BRIDGE_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
/// A container behind `docker0`.
pub const CONTAINER_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
/// Docker's bridge's ULA (when IPv6 is enabled for it), /64.
pub const DOCKER_BRIDGE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 1);
/// The container's ULA, /64.
pub const CONTAINER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);
/// A libvirt "routed" network's bridge in the client (`virbr1`), /24, no masquerade.
pub const VM_BRIDGE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
/// A VM on the routed network.
pub const VM_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 2);

/// The `n`-th IPv4 gateway address, `198.51.100.n` (`n` in 1..=49, kept clear of
/// [`OTHER_RESOLVER_V4`]).
pub fn gateway_v4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, n.clamp(1, 49))
}

/// Whether `ip` is one of the address ranges the harness may use for hosts.
pub fn is_harness_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            ) || (o[0] == 192 && o[1] == 168)
                || (o[0] == 10 && (o[1] == 41 || o[1] == 42) && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0xdb8 || (s[0] & 0xff00) == 0xfd00
        }
    }
}
