//! Policy: what the caller wants the kill switch to do.
//!
//! A [`Policy`] is built by the command line or by an embedding VPN client through
//! [`PolicyBuilder`]. It holds no knowledge of the network; [`crate::discovery`] supplies that,
//! and [`crate::plan`] combines both into a ruleset.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

pub use crate::nft::ruleset::IfPattern;

/// The resolver that all DNS is rewritten to when the VPN uses UDP (the seed's default).
pub const RESOLVER_UDP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
/// The resolver that all DNS is rewritten to when the VPN uses TCP (`--tcp`).
pub const RESOLVER_TCP: Ipv4Addr = Ipv4Addr::new(10, 41, 0, 1);
/// The default tunnel interface pattern (OpenVPN's `--dev tun` creates `tun0`, `tun1`, ...).
pub const DEFAULT_TUNNEL: &str = "tun*";
/// The most gateways one policy may hold. Providers have tens; this bound keeps a mistaken or
/// hostile command line from building a batch of hundreds of megabytes.
pub const MAX_GATEWAYS: usize = 16_384;

/// Which local-network traffic stays open outside the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanMode {
    /// Private on-link prefixes only (RFC 1918, 169.254/16, fe80::/10, fc00::/7). The default:
    /// a public on-link prefix (a hotel's or an attacker's network) is never trusted.
    #[default]
    Private,
    /// Every on-link prefix of every non-tunnel interface, as the original did.
    OnLink,
    /// No local network at all (DHCP and IPv6 neighbour discovery still work).
    Off,
}

impl LanMode {
    /// The word used on the command line and in the table's comment.
    pub fn as_str(self) -> &'static str {
        match self {
            LanMode::Private => "private",
            LanMode::OnLink => "on-link",
            LanMode::Off => "off",
        }
    }
}

impl FromStr for LanMode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "private" => Ok(LanMode::Private),
            "on-link" => Ok(LanMode::OnLink),
            "off" => Ok(LanMode::Off),
            other => Err(PolicyError::BadLanMode(other.to_string())),
        }
    }
}

impl fmt::Display for LanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule set to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// The kill switch this project recommends: interface-agnostic, IPv6 fully covered, DNS
    /// allowed out only through the tunnel.
    #[default]
    Default,
    /// The original bitmask-root rules, as exactly as nftables can express them. **Leaky**:
    /// bound to the default device at start, IPv6 rejects only TCP and UDP, DNAT'd DNS may leave
    /// in clear through the LAN. Meant for comparison, never for protection.
    Compat,
}

impl Profile {
    /// The word used in the table's comment.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Compat => "compat",
        }
    }
}

impl FromStr for IfPattern {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (stem, wildcard) = match s.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (s, false),
        };
        let ok_chars = stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        // IFNAMSIZ is 16 including the NUL; a stem of 15 plus '*' is still meaningful.
        if stem.is_empty() || stem.len() > 15 || !ok_chars || stem == "lo" {
            return Err(PolicyError::BadTunnel(s.to_string()));
        }
        Ok(IfPattern::from_parts(stem, wildcard))
    }
}

/// What the firewall lets out besides the tunnel, the local network, DHCP and neighbour
/// discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// `firewall start GATEWAY...`: the VPN gateways are reachable, so a VPN can connect. A
    /// policy in this mode needs at least one gateway.
    #[default]
    Connect,
    /// `firewall block`: no gateway at all, for "block when disconnected" and for boot. A
    /// policy in this mode takes no gateway; `firewall start GATEWAY...` later replaces it
    /// atomically.
    Block,
}

impl Mode {
    /// The word used in the table's comment.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Block => "block",
        }
    }
}

/// Why a policy could not be built. Every message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A gateway was not a plain IPv4 or IPv6 address.
    #[error("invalid gateway {0:?}: give an IPv4 address in dotted-quad form (like 198.51.100.7) or an IPv6 address")]
    BadGateway(String),
    /// A gateway was an address that cannot be a VPN server.
    #[error("invalid gateway {0}: unspecified, multicast and broadcast addresses cannot be VPN gateways")]
    UnusableGateway(IpAddr),
    /// No gateway was given.
    #[error("no gateway given: firewall start needs the address of at least one VPN gateway (to block everything without one, use firewall block)")]
    NoGateway,
    /// Gateways were given to a blocking policy ([`Mode::Block`]).
    #[error("firewall block takes no gateway ({0} given): to let a VPN connect, use firewall start GATEWAY...")]
    GatewayWhileBlocking(usize),
    /// Too many gateways were given.
    #[error("{0} gateways given, at most {MAX_GATEWAYS} are allowed")]
    TooManyGateways(usize),
    /// The resolver was not a plain IPv4 address.
    #[error("invalid resolver {0:?}: give an IPv4 address in dotted-quad form (like 10.42.0.1)")]
    BadResolver(String),
    /// The LAN mode was not one of the three words.
    #[error("invalid LAN mode {0:?}: use private, on-link or off")]
    BadLanMode(String),
    /// The tunnel pattern was not an interface name.
    #[error("invalid tunnel interface {0:?}: give an interface name like tun0, or a prefix with a trailing * like tun*")]
    BadTunnel(String),
}

/// Parses a gateway strictly: a dotted quad of four decimal parts without leading zeros, or an
/// IPv6 address. `1`, `127.1`, `1.2.3.4 junk`, `999.1.1.1` and host names are refused.
pub fn parse_gateway(s: &str) -> Result<IpAddr, PolicyError> {
    let addr = if s.contains(':') {
        s.parse::<std::net::Ipv6Addr>().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| PolicyError::BadGateway(s.to_string()))?;
    usable_gateway(addr)
}

/// Refuses addresses that cannot be a VPN server: unspecified, multicast, broadcast.
fn usable_gateway(addr: IpAddr) -> Result<IpAddr, PolicyError> {
    let unusable = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    if unusable {
        return Err(PolicyError::UnusableGateway(addr));
    }
    Ok(addr)
}

/// Parses an IPv4 resolver address strictly (see [`parse_gateway`]).
pub fn parse_resolver(s: &str) -> Result<Ipv4Addr, PolicyError> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| PolicyError::BadResolver(s.to_string()))
}

/// What the caller wants: the complete, validated input of the planner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    gateways: BTreeSet<IpAddr>,
    resolver: Ipv4Addr,
    lan: LanMode,
    debug: bool,
    tunnel: IfPattern,
    profile: Profile,
    forward: bool,
    mode: Mode,
}

impl Policy {
    /// Starts a builder with the defaults: resolver 10.42.0.1, LAN `private`, no debug log,
    /// tunnel `tun*`, the default profile, forwarded traffic covered, and no gateway yet.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }
    /// The VPN gateways, sorted and without duplicates.
    pub fn gateways(&self) -> &BTreeSet<IpAddr> {
        &self.gateways
    }
    /// The resolver all DNS is rewritten to.
    pub fn resolver(&self) -> Ipv4Addr {
        self.resolver
    }
    /// The local network mode.
    pub fn lan(&self) -> LanMode {
        self.lan
    }
    /// Whether rejected packets are logged.
    pub fn debug(&self) -> bool {
        self.debug
    }
    /// The tunnel interface pattern.
    pub fn tunnel(&self) -> &IfPattern {
        &self.tunnel
    }
    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
    /// Whether the kill switch covers forwarded traffic (containers, VMs, a shared
    /// connection): true by default; always false with [`Profile::Compat`], which has no
    /// forwarding rules, as the original.
    pub fn forward(&self) -> bool {
        self.forward
    }
    /// Whether the VPN gateways are open ([`Mode::Connect`]) or everything is blocked
    /// ([`Mode::Block`]).
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Builds a [`Policy`]; see [`Policy::builder`].
///
/// ```
/// use bitmask_root::policy::{Policy, LanMode};
/// let policy = Policy::builder()
///     .gateway("198.51.100.7".parse().unwrap())
///     .lan(LanMode::Off)
///     .build()
///     .expect("a valid policy");
/// assert_eq!(policy.gateways().len(), 1);
/// assert_eq!(policy.resolver().to_string(), "10.42.0.1");
/// ```
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    /// In the order given, duplicates included; sorted and merged by `build`.
    gateways: Vec<IpAddr>,
    resolver: Ipv4Addr,
    lan: LanMode,
    debug: bool,
    tunnel: IfPattern,
    profile: Profile,
    forward: bool,
    mode: Mode,
}

impl Default for PolicyBuilder {
    fn default() -> Self {
        PolicyBuilder {
            gateways: Vec::new(),
            resolver: RESOLVER_UDP,
            lan: LanMode::default(),
            debug: false,
            tunnel: IfPattern::from_parts("tun", true),
            profile: Profile::default(),
            forward: true,
            mode: Mode::default(),
        }
    }
}

impl PolicyBuilder {
    /// Adds a gateway (duplicates are merged).
    pub fn gateway(mut self, gw: IpAddr) -> Self {
        self.gateways.push(gw);
        self
    }
    /// Adds several gateways.
    pub fn gateways<I: IntoIterator<Item = IpAddr>>(mut self, gws: I) -> Self {
        self.gateways.extend(gws);
        self
    }
    /// Sets the resolver DNS is rewritten to.
    pub fn resolver(mut self, resolver: Ipv4Addr) -> Self {
        self.resolver = resolver;
        self
    }
    /// Sets the local network mode.
    pub fn lan(mut self, lan: LanMode) -> Self {
        self.lan = lan;
        self
    }
    /// Logs packets before they are rejected (prefix `iptables denied: `, level debug).
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }
    /// Sets the tunnel interface pattern.
    pub fn tunnel(mut self, tunnel: IfPattern) -> Self {
        self.tunnel = tunnel;
        self
    }
    /// Chooses the profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
    /// Whether forwarded traffic is covered too (the default: `true`). Packets this host
    /// routes for containers, VMs or a shared connection are then judged like its own: out
    /// through the tunnel, to the local network per [`LanMode`], and nothing else; their
    /// DNS is rewritten to the resolver. `false` leaves forwarded traffic unfiltered: with
    /// the tunnel down, everything a container, VM or hotspot client sends leaves in clear.
    /// Ignored by [`Profile::Compat`] (no forwarding rules, as the original).
    pub fn forward(mut self, forward: bool) -> Self {
        self.forward = forward;
        self
    }
    /// Chooses the mode: [`Mode::Connect`] (the default) needs gateways, [`Mode::Block`]
    /// refuses them.
    ///
    /// ```
    /// use bitmask_root::policy::{Mode, Policy};
    /// let block = Policy::builder().mode(Mode::Block).build().expect("no gateway needed");
    /// assert!(block.gateways().is_empty());
    /// assert!(Policy::builder().build().is_err(), "connecting needs a gateway");
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Checks the policy: in [`Mode::Connect`] at least one gateway, at most
    /// [`MAX_GATEWAYS`], no unusable address; in [`Mode::Block`] no gateway at all.
    pub fn build(mut self) -> Result<Policy, PolicyError> {
        match self.mode {
            Mode::Connect if self.gateways.is_empty() => return Err(PolicyError::NoGateway),
            Mode::Block if !self.gateways.is_empty() => {
                return Err(PolicyError::GatewayWhileBlocking(self.gateways.len()))
            }
            _ => {}
        }
        if self.gateways.len() > MAX_GATEWAYS {
            return Err(PolicyError::TooManyGateways(self.gateways.len()));
        }
        // Sorted first: the first unusable address reported is the lowest, as before.
        self.gateways.sort_unstable();
        self.gateways.dedup();
        for gw in &self.gateways {
            usable_gateway(*gw)?;
        }
        Ok(Policy {
            // From sorted addresses the set is built in one pass.
            gateways: self.gateways.into_iter().collect(),
            resolver: self.resolver,
            lan: self.lan,
            debug: self.debug,
            tunnel: self.tunnel,
            profile: self.profile,
            forward: self.forward && self.profile == Profile::Default,
            mode: self.mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_are_parsed_strictly() {
        for bad in [
            "1",
            "127.1",
            "1.2.3.4 junk",
            "999.1.1.1",
            "example.org",
            "",
            " 1.2.3.4",
            "1.2.3.4.",
            "01.2.3.4",
            "0x7f.0.0.1",
            "4294967295",
            "1.2.3.4/32",
            "fe80::1%eth0",
            "٣.1.1.1",
            "1.2.3.4;reboot",
            "$(id)",
        ] {
            assert!(parse_gateway(bad).is_err(), "{bad:?} must be refused");
        }
        for bad in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"] {
            assert!(
                matches!(parse_gateway(bad), Err(PolicyError::UnusableGateway(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_gateway("198.51.100.7").unwrap().to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            parse_gateway("2001:db8::1").unwrap().to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn builder_needs_a_gateway_and_bounds_them() {
        assert_eq!(Policy::builder().build(), Err(PolicyError::NoGateway));
        let many = (0..=MAX_GATEWAYS as u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        assert!(matches!(
            Policy::builder().gateways(many).build(),
            Err(PolicyError::TooManyGateways(_))
        ));
    }

    #[test]
    fn blocking_takes_no_gateway() {
        let p = Policy::builder().mode(Mode::Block).build().unwrap();
        assert_eq!(p.mode(), Mode::Block);
        assert!(p.gateways().is_empty());
        assert_eq!(
            Policy::builder()
                .mode(Mode::Block)
                .gateway("198.51.100.7".parse().unwrap())
                .build(),
            Err(PolicyError::GatewayWhileBlocking(1))
        );
        let p = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        assert_eq!(p.mode(), Mode::Connect, "connecting is the default");
    }

    #[test]
    fn tunnel_patterns() {
        let p: IfPattern = "tun*".parse().unwrap();
        assert!(p.matches("tun0") && !p.matches("eth0"));
        let p: IfPattern = "wg0".parse().unwrap();
        assert!(p.matches("wg0") && !p.matches("wg01"));
        for bad in ["", "*", "lo", "a b", "averyveryverylongname", "tun*0"] {
            assert!(bad.parse::<IfPattern>().is_err(), "{bad:?}");
        }
    }
}
