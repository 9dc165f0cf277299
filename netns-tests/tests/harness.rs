//! Self-tests of the harness, without any firewall: topology, probes, cleanup, refusals.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use netns_tests::addr::*;
use netns_tests::probe::dns::{dns_query, DnsOutcome, DnsResponder, Transport};
use netns_tests::probe::icmp::{icmp_echo, EchoCounter, EchoOutcome};
use netns_tests::probe::tap::{proto, Tap};
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::probe::udp::{udp_send, UdpListener};
use netns_tests::{names, netns, BitmaskRoot, Netns, SendOpts, Topology};

const WAIT: Duration = Duration::from_secs(2);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn full() -> Topology {
    Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .hosts(&[IpAddr::V6(GATEWAY_V6)])
        .build()
        .expect("build topology")
}

#[test]
fn namespaces_are_isolated_and_uniquely_named() {
    let t = Topology::builder().build().expect("build");
    let initial = std::fs::metadata("/proc/self/ns/net").expect("stat").ino();
    for name in t.namespace_names() {
        assert!(
            name.starts_with(&format!("bmr-{}-", std::process::id())),
            "{name}"
        );
        let ino = std::fs::metadata(format!("/run/netns/{name}"))
            .expect("stat")
            .ino();
        assert_ne!(ino, initial, "{name} is the initial namespace");
    }
    // A closure run "in" the client really is in the client namespace.
    let client_ino = std::fs::metadata(t.client().path()).expect("stat").ino();
    let seen = t
        .client()
        .run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()))
        .expect("run")
        .expect("stat in thread");
    assert_eq!(seen, client_ino);
    // The machine's own namespace has none of our links.
    let root_links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let root_links = String::from_utf8_lossy(&root_links.stdout);
    for ifname in ["lan0", "wan0", "tunpeer"] {
        assert!(
            !root_links.contains(&format!(": {ifname}@")),
            "{ifname} leaked into root"
        );
    }
}

#[test]
fn refuses_the_initial_namespace() {
    // PID 1's namespace is refused (or unreadable, which is refused too).
    assert!(netns::ensure_not_initial(Path::new("/proc/1/ns/net")).is_err());
    // The test process itself runs in the initial namespace.
    let e = netns::ensure_not_initial(Path::new("/proc/self/ns/net")).expect_err("refuse");
    assert!(e.message().contains("initial"), "{e}");
    let ns = Netns::create("probe").expect("create");
    assert!(netns::ensure_not_initial(ns.path()).is_ok());
}

#[test]
fn cleanup_happens_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let t = full();
        let _l = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, 9)).expect("listener");
        tx.send(t.namespace_names()).expect("send");
        panic!("deliberate panic inside a topology");
    });
    assert!(r.is_err(), "the closure should have panicked");
    let created = rx.recv().expect("names");
    assert_eq!(created.len(), 5);
    let existing = names::existing();
    for n in &created {
        assert!(
            !Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} left behind"
        );
        assert!(!existing.contains(n), "{n} still listed");
    }
}

#[test]
fn udp_tcp_icmp_reach_the_internet_without_firewall() {
    let t = Topology::builder().build().expect("build");
    let udp = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, 9)).expect("udp");
    let tcp = TcpListener::start(t.internet(), sa(INTERNET_HOST_V4, 80)).expect("tcp");
    let echo = EchoCounter::start(t.internet()).expect("echo");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();

    let r = udp_send(t.client(), sa(INTERNET_HOST_V4, 9), b"hello", &o).expect("send");
    assert_eq!(r.sent, 1);
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN_V4));
    assert_eq!(udp.datagrams()[0].payload, b"hello");

    let c = tcp_connect(t.client(), sa(INTERNET_HOST_V4, 80), b"x", &o).expect("connect");
    assert_eq!(c, ConnectOutcome::Connected);
    assert_eq!(tcp.wait_for(1, WAIT), 1);
    // Nothing listens on port 81: refused by the host, and no connection recorded.
    let c = tcp_connect(t.client(), sa(INTERNET_HOST_V4, 81), b"x", &o).expect("connect");
    assert_eq!(c, ConnectOutcome::Refused);

    let e = icmp_echo(t.client(), IpAddr::V4(INTERNET_HOST_V4), &o).expect("echo");
    assert_eq!(e, EchoOutcome::Reply);
    let e = icmp_echo(t.client(), IpAddr::V6(INTERNET_HOST_V6), &o).expect("echo6");
    assert_eq!(e, EchoOutcome::Reply);
    assert_eq!(echo.wait_for(2, WAIT), 2);
    assert_eq!(echo.count_from(IpAddr::V4(CLIENT_LAN_V4)), 1);
    assert_eq!(echo.count_from(IpAddr::V6(CLIENT_LAN_V6)), 1);

    let udp6 = UdpListener::start(t.internet(), sa(INTERNET_HOST_V6, 9)).expect("udp6");
    udp_send(t.client(), sa(INTERNET_HOST_V6, 9), b"six", &o).expect("send6");
    assert_eq!(udp6.wait_for(1, WAIT), 1);

    let to_host =
        |p: &netns_tests::probe::tap::Packet| p.inbound && p.dst == IpAddr::V4(INTERNET_HOST_V4);
    // The tap's thread may record a packet a moment after it was delivered: wait for it.
    let udp_seen = |p: &_| to_host(p) && p.proto == proto::UDP && p.dport == Some(9);
    assert_eq!(tap.wait_for(1, WAIT, udp_seen), 1);
    assert!(tap.wait_for(1, WAIT, |p| to_host(p) && p.proto == proto::TCP) >= 1);
    let echo_seen = |p: &_| to_host(p) && p.proto == proto::ICMP && p.icmp_type == Some(8);
    assert_eq!(tap.wait_for(1, WAIT, echo_seen), 1);
}

#[test]
fn dns_responder_says_who_answered() {
    let t = Topology::builder().tunnel(true).build().expect("build");
    let vpn = t.vpn().expect("vpn");
    let other = DnsResponder::start(t.internet(), IpAddr::V4(OTHER_RESOLVER_V4)).expect("dns");
    let r42 = DnsResponder::start(vpn, IpAddr::V4(VPN_RESOLVER)).expect("dns");
    let r41 = DnsResponder::start(vpn, IpAddr::V4(VPN_RESOLVER_TCP)).expect("dns");
    let o = SendOpts::default();
    for tr in [Transport::Udp, Transport::Tcp] {
        let a = dns_query(t.client(), sa(OTHER_RESOLVER_V4, 53), tr, &o).expect("query");
        assert_eq!(
            a.answered_by(),
            Some(IpAddr::V4(OTHER_RESOLVER_V4)),
            "{tr:?}"
        );
        let a = dns_query(t.client(), sa(VPN_RESOLVER, 53), tr, &o).expect("query");
        assert_eq!(a.answered_by(), Some(IpAddr::V4(VPN_RESOLVER)), "{tr:?}");
        let a = dns_query(t.client(), sa(VPN_RESOLVER_TCP, 53), tr, &o).expect("query");
        assert_eq!(
            a.answered_by(),
            Some(IpAddr::V4(VPN_RESOLVER_TCP)),
            "{tr:?}"
        );
    }
    assert_eq!(other.count(), 2);
    assert_eq!(r42.count(), 2);
    assert_eq!(r41.count(), 2);
    // The query to the internet resolver went through the tunnel.
    assert!(other
        .queries()
        .iter()
        .all(|q| q.from.ip() == IpAddr::V4(CLIENT_TUN_V4)));
    // No responder on 203.0.113.10: no answer.
    let a = dns_query(t.client(), sa(INTERNET_HOST_V4, 53), Transport::Udp, &o).expect("q");
    assert!(matches!(a, DnsOutcome::NoAnswer(_)), "{a:?}");
}

#[test]
fn tunnel_routes_follow_up_and_down() {
    let t = Topology::builder().tunnel(true).build().expect("build");
    let udp = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, 9)).expect("udp");
    let gw = UdpListener::start(t.internet(), sa(GATEWAY_V4, 1194)).expect("udp");
    let tun_tap = Tap::start(t.vpn().expect("vpn"), "tunpeer").expect("tap");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();
    udp_send(t.client(), sa(INTERNET_HOST_V4, 9), b"a", &o).expect("send");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_TUN_V4));
    // The gateway is reached over the uplink, not the tunnel.
    udp_send(t.client(), sa(GATEWAY_V4, 1194), b"g", &o).expect("send");
    assert_eq!(gw.wait_for(1, WAIT), 1);
    assert_eq!(gw.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN_V4));
    assert_eq!(tun_tap.count(|p| p.dst == IpAddr::V4(GATEWAY_V4)), 0);

    t.tunnel_down().expect("down");
    udp.clear();
    udp_send(t.client(), sa(INTERNET_HOST_V4, 9), b"b", &o).expect("send");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN_V4));
    assert_eq!(
        lan_tap.wait_for(1, WAIT, |p| p.inbound
            && p.dst == IpAddr::V4(INTERNET_HOST_V4)),
        1
    );

    t.tunnel_up().expect("up");
    udp.clear();
    udp_send(t.client(), sa(INTERNET_HOST_V4, 9), b"c", &o).expect("send");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_TUN_V4));
}

#[test]
fn second_uplink_bind_to_device_and_default_route_move() {
    let t = full();
    let r2_tap = Tap::start(t.router2().expect("r2"), "lan0").expect("tap");
    let udp = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, 9)).expect("udp");
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"eth1",
        &SendOpts::device("eth1"),
    )
    .expect("send");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN2_V4));
    assert_eq!(
        r2_tap.wait_for(1, WAIT, |p| p.inbound
            && p.dst == IpAddr::V4(INTERNET_HOST_V4)),
        1
    );

    udp.clear();
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"eth0",
        &SendOpts::device("eth0"),
    )
    .expect("send");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN_V4));

    // With the tunnel down and the default route moved, traffic uses eth1.
    t.tunnel_down().expect("down");
    t.move_default_route_to_second_uplink().expect("move");
    udp.clear();
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"moved",
        &SendOpts::default(),
    )
    .expect("s");
    assert_eq!(udp.wait_for(1, WAIT), 1);
    assert_eq!(udp.datagrams()[0].from.ip(), IpAddr::V4(CLIENT_LAN2_V4));
}

#[test]
fn ipv6_link_local_nd_and_ula() {
    let t = Topology::builder().build().expect("build");
    let ll = Topology::link_local(t.router(), "lan0").expect("ll");
    let o = SendOpts::device("eth0");
    let e = icmp_echo(t.client(), IpAddr::V6(ll), &o).expect("echo");
    assert_eq!(e, EchoOutcome::Reply);
    let e = icmp_echo(t.client(), IpAddr::V6(ROUTER_LAN_V6), &SendOpts::default()).expect("e");
    assert_eq!(e, EchoOutcome::Reply);
    let neigh = t
        .client()
        .ip(&["-6", "neigh", "show", "dev", "eth0"])
        .expect("neigh");
    assert!(
        neigh.contains(&ll.to_string()) || neigh.contains("fd00:1::1"),
        "{neigh}"
    );
}

#[test]
fn multicast_and_broadcast_leave_the_client() {
    let t = Topology::builder().build().expect("build");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let mdns = UdpListener::start_multicast(
        t.router(),
        IpAddr::V4(std::net::Ipv4Addr::new(224, 0, 0, 251)),
        5353,
        "lan0",
    )
    .expect("mdns listener");
    let o = SendOpts {
        multicast_if: Some("eth0".into()),
        ..Default::default()
    };
    udp_send(
        t.client(),
        "224.0.0.251:5353".parse().expect("addr"),
        b"m",
        &o,
    )
    .expect("send");
    udp_send(
        t.client(),
        "239.255.255.250:1900".parse().expect("addr"),
        b"s",
        &o,
    )
    .expect("s");
    udp_send(
        t.client(),
        "[ff02::fb]:5353".parse().expect("addr"),
        b"m6",
        &o,
    )
    .expect("send");
    assert_eq!(mdns.wait_for(1, WAIT), 1);
    let dports = |port| tap.wait_for(1, WAIT, move |p| p.inbound && p.dport == Some(port));
    assert_eq!(dports(1900), 1);
    assert!(dports(5353) >= 2, "{:?}", tap.packets());
    let b = SendOpts {
        broadcast: true,
        bind_device: Some("eth0".into()),
        bind_addr: Some("0.0.0.0:68".parse().expect("addr")),
        ..Default::default()
    };
    udp_send(
        t.client(),
        "255.255.255.255:67".parse().expect("addr"),
        b"dhcp",
        &b,
    )
    .expect("b");
    assert_eq!(dports(67), 1);
}

#[test]
fn binary_lookup_fails_loudly() {
    let e = BitmaskRoot::at("/nonexistent/bitmask-root").expect_err("missing binary");
    assert!(e.message().contains("not found"), "{e}");
}
