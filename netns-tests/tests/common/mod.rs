//! Helpers shared by the leak-matrix tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netns_tests::probe::icmp::{icmp_echo, EchoCounter, EchoOutcome};
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::probe::udp::{udp_send, UdpListener};
use netns_tests::probe::SETTLE;
use netns_tests::report::Case;
use netns_tests::{BitmaskRoot, Netns, SendOpts};

/// UDP port probed on every host.
pub const UDP_PORT: u16 = 9;
/// TCP port probed on every host.
pub const TCP_PORT: u16 = 80;
/// How long to wait for packets that should arrive.
pub const WAIT: Duration = Duration::from_secs(2);

/// The binary under test.
pub fn bin() -> BitmaskRoot {
    BitmaskRoot::from_env().expect("the bitmask-root binary (cargo build, or BITMASK_ROOT_BIN)")
}

/// A socket address.
pub fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// An IPv4 address as `IpAddr`.
pub fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// Listeners (udp and tcp) on one host address, plus the echo counter of its namespace.
pub struct Host {
    /// The address.
    pub ip: IpAddr,
    /// UDP listener on [`UDP_PORT`].
    pub udp: UdpListener,
    /// TCP listener on [`TCP_PORT`].
    pub tcp: TcpListener,
    /// Echo requests arriving in the host's namespace.
    pub echo: EchoCounter,
}

impl Host {
    /// Starts listening on `ip` in `ns`.
    pub fn start(ns: &Netns, ip: impl Into<IpAddr>) -> Host {
        let ip = ip.into();
        Host {
            ip,
            udp: UdpListener::start(ns, sa(ip, UDP_PORT)).expect("udp listener"),
            tcp: TcpListener::start(ns, sa(ip, TCP_PORT)).expect("tcp listener"),
            echo: EchoCounter::start(ns).expect("echo counter"),
        }
    }
}

/// What one round of udp + tcp + icmp probes produced.
#[derive(Debug)]
pub struct Seen {
    /// Datagrams that arrived at the host.
    pub udp: usize,
    /// Connections the host accepted.
    pub tcp: usize,
    /// Echo requests that arrived in the host's namespace from the client.
    pub icmp: usize,
    /// What the connect saw.
    pub tcp_outcome: ConnectOutcome,
    /// What the echo saw.
    pub icmp_outcome: EchoOutcome,
}

impl Seen {
    /// Records what arrived and checks it: all three arrive when `arrive`, none otherwise.
    #[track_caller]
    pub fn check(&self, case: &mut Case, label: &str, arrive: bool) {
        case.seen(format!(
            "{label}: udp={} tcp={} icmp={} (sender saw tcp {:?}, icmp {:?})",
            self.udp, self.tcp, self.icmp, self.tcp_outcome, self.icmp_outcome
        ));
        let want = |n: usize| if arrive { n >= 1 } else { n == 0 };
        let word = if arrive { "arrive" } else { "be blocked" };
        case.check(
            want(self.udp),
            format!("{label}: udp should {word} ({} arrived)", self.udp),
        );
        case.check(
            want(self.tcp),
            format!("{label}: tcp should {word} ({} arrived)", self.tcp),
        );
        case.check(
            want(self.icmp),
            format!("{label}: icmp echo should {word} ({} arrived)", self.icmp),
        );
    }
}

/// Sends one udp datagram, one tcp connect and one echo request from `client` to `host`
/// (with `opts`), and counts what arrived at the host. Waits up to [`WAIT`] for arrivals
/// when `arrive` is expected, and [`SETTLE`] otherwise.
pub fn probe(
    client: &Netns,
    host: &Host,
    src: Option<IpAddr>,
    opts: &SendOpts,
    arrive: bool,
) -> Seen {
    host.udp.clear();
    host.tcp.clear();
    host.echo.clear();
    let u = udp_send(client, sa(host.ip, UDP_PORT), b"leak-probe", opts).expect("udp send");
    let _ = u;
    let tcp_outcome = tcp_connect(client, sa(host.ip, TCP_PORT), b"leak-probe", opts).expect("tcp");
    let icmp_outcome = icmp_echo(client, host.ip, opts).expect("echo");
    let echo_count = |h: &Host| match src {
        Some(s) => h.echo.count_from(s),
        None => h.echo.count(),
    };
    if arrive {
        host.udp.wait_for(1, WAIT);
        host.tcp.wait_for(1, WAIT);
        host.echo.wait_for(1, WAIT);
    } else {
        std::thread::sleep(SETTLE);
    }
    Seen {
        udp: host.udp.count(),
        tcp: host.tcp.count(),
        icmp: echo_count(host),
        tcp_outcome,
        icmp_outcome,
    }
}

/// `firewall start` with `flags` and `gws`; panics with the binary's message on failure.
pub fn start(b: &BitmaskRoot, ns: &Netns, flags: &[&str], gws: &[IpAddr]) {
    b.start(ns, flags, gws).expect("firewall start");
}

/// A small deterministic PRNG (xorshift64*), seeded from the clock unless
/// `NETNS_TESTS_SEED` is set; the seed is printed so a run can be repeated.
pub struct Rng(u64);

impl Rng {
    /// A new generator; prints its seed.
    pub fn new(label: &str) -> Rng {
        let seed = std::env::var("NETNS_TESTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x9e37_79b9)
                    | 1
            });
        eprintln!("{label}: NETNS_TESTS_SEED={seed}");
        Rng(seed)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
