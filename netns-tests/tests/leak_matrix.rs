//! The leak matrix of issue 3 (cases 1-14) and issue 9 (DNS, cases 15-19): each case is one
//! test, with real packets in throw-away namespaces, the `bitmask-root` binary running in the
//! client namespace. Each case appends a line to `$LEAK_REPORT_JSONL` (see `netns_tests::report`).
//!
//! Run with `cargo xtask netns-test`, or `cargo test -p netns-tests --test leak_matrix`
//! after `cargo build` (as root).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::*;
use netns_tests::addr::*;
use netns_tests::dnsmasq::Dnsmasq;
use netns_tests::nft;
use netns_tests::probe::dns::{dns_query, DnsResponder, Transport};
use netns_tests::probe::icmp::{icmp_echo, EchoOutcome};
use netns_tests::probe::tap::{proto, Packet, Tap};
use netns_tests::probe::udp::{udp_send, UdpListener, UdpStream};
use netns_tests::probe::SETTLE;
use netns_tests::report::Case;
use netns_tests::{SendOpts, Topology};

const OUR_TABLE: (&str, &str) = ("inet", "bitmask");

fn gw() -> Vec<IpAddr> {
    vec![v4(GATEWAY_V4)]
}

#[test]
fn case01_internet_blocked_on_default_uplink() {
    let mut case = Case::begin(
        1,
        "internet blocked on the default uplink",
        "tcp, udp and icmp to a non-gateway internet host: nothing arrives (firewall up, no tunnel)",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();

    probe(t.client(), &host, None, &o, true).check(&mut case, "baseline without firewall", true);
    start(&b, t.client(), &[], &gw());
    tap.clear();
    probe(t.client(), &host, None, &o, false).check(&mut case, "203.0.113.10 with firewall", false);
    let wire = tap.count_inbound(|p| p.dst == host.ip);
    case.expect_count("packets to 203.0.113.10 on the LAN wire", wire, 0);
    case.pass();
}

#[test]
fn case02_gateway_lan_and_multicast_allowed() {
    let mut case = Case::begin(
        2,
        "gateway, LAN and multicast allowed",
        "to a gateway: arrives; to the LAN router: arrives; SSDP and mDNS multicast leave",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let gateway = Host::start(t.internet(), GATEWAY_V4);
    let lan = Host::start(t.router(), ROUTER_LAN_V4);
    let lan6 = Host::start(t.router(), ROUTER_LAN_V6);
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    start(&b, t.client(), &[], &gw());
    let o = SendOpts::default();
    probe(t.client(), &gateway, None, &o, true).check(&mut case, "gateway 198.51.100.1", true);
    probe(t.client(), &lan, None, &o, true).check(&mut case, "LAN 192.168.1.1", true);
    probe(t.client(), &lan6, None, &o, true).check(&mut case, "LAN fd00:1::1", true);

    let m = SendOpts {
        multicast_if: Some("eth0".into()),
        ..Default::default()
    };
    for (dst, port) in [
        ("239.255.255.250", 1900u16),
        ("224.0.0.251", 5353),
        ("ff02::fb", 5353),
    ] {
        let ip: IpAddr = dst.parse().expect("group");
        let r = udp_send(t.client(), sa(ip, port), b"multicast", &m).expect("send");
        let n = tap.wait_for(1, WAIT, |p| {
            p.inbound && p.dst == ip && p.dport == Some(port)
        });
        case.seen(format!(
            "multicast {dst}:{port}: sent={} on LAN wire={n}",
            r.sent
        ));
        case.check(
            n >= 1,
            format!("multicast to {dst}:{port} should leave ({n} seen)"),
        );
    }
    case.pass();
}

#[test]
fn case03_dns_only_to_vpn_resolver_through_tunnel() {
    let mut case = Case::begin(
        3,
        "DNS only to the VPN resolver, only through the tunnel",
        "udp/tcp DNS to 198.51.100.53 answered by 10.42.0.1 via the tunnel; tunnel down: no port-53 packet on any physical link; DNS to a gateway not rewritten; 127.0.0.53 untouched; --tcp answers from 10.41.0.1",
    );
    let b = bin();
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .build()
        .expect("topology");
    let vpn = t.vpn().expect("vpn");
    let other = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    let at_gw = DnsResponder::start(t.internet(), v4(GATEWAY_V4)).expect("dns");
    let r42 = DnsResponder::start(vpn, v4(VPN_RESOLVER)).expect("dns");
    let r41 = DnsResponder::start(vpn, v4(VPN_RESOLVER_TCP)).expect("dns");
    let local = DnsResponder::start(t.client(), "127.0.0.53".parse().expect("ip")).expect("dns");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let lan2_tap = Tap::start(t.router2().expect("r2"), "lan0").expect("tap");
    let tun_tap = Tap::start(vpn, "tunpeer").expect("tap");
    let o = SendOpts::default();
    let q = |server: IpAddr, tr: Transport| {
        dns_query(t.client(), sa(server, 53), tr, &o).expect("query")
    };

    start(&b, t.client(), &[], &gw());
    for tr in [Transport::Udp, Transport::Tcp] {
        let a = q(v4(OTHER_RESOLVER_V4), tr);
        case.seen(format!("{tr:?} DNS to 198.51.100.53: {a:?}"));
        case.check(
            a.answered_by() == Some(v4(VPN_RESOLVER)),
            format!("{tr:?} DNS to 198.51.100.53 should be answered by 10.42.0.1, got {a:?}"),
        );
    }
    case.expect_count("queries reaching 198.51.100.53", other.count(), 0);
    let via_tunnel = r42
        .queries()
        .iter()
        .filter(|x| x.from.ip() == v4(CLIENT_TUN_V4))
        .count();
    case.expect_count(
        "queries at 10.42.0.1 from the tunnel address",
        via_tunnel,
        2,
    );
    let tun53 = tun_tap.wait_for(2, Duration::from_secs(2), |p| {
        p.inbound && p.dport == Some(53)
    });
    case.expect_at_least("port-53 packets on the tunnel", tun53, 2);

    for tr in [Transport::Udp, Transport::Tcp] {
        let a = q(v4(GATEWAY_V4), tr);
        case.seen(format!("{tr:?} DNS to gateway 198.51.100.1: {a:?}"));
        case.check(
            a.answered_by() == Some(v4(GATEWAY_V4)),
            format!("{tr:?} DNS to the gateway should not be rewritten, got {a:?}"),
        );
        let a = q("127.0.0.53".parse().expect("ip"), tr);
        case.seen(format!("{tr:?} DNS to 127.0.0.53: {a:?}"));
        case.check(
            a.answered_by() == Some("127.0.0.53".parse().expect("ip")),
            format!("{tr:?} DNS to 127.0.0.53 should reach the local listener, got {a:?}"),
        );
    }
    case.expect_count("queries at the local 127.0.0.53 listener", local.count(), 2);
    case.expect_count("queries at the gateway's port 53", at_gw.count(), 2);

    t.tunnel_down().expect("tunnel down");
    lan_tap.clear();
    lan2_tap.clear();
    let before = r42.count() + other.count();
    for server in [
        v4(OTHER_RESOLVER_V4),
        v4(VPN_RESOLVER),
        v4(INTERNET_HOST_V4),
    ] {
        for tr in [Transport::Udp, Transport::Tcp] {
            let a = q(server, tr);
            case.seen(format!("tunnel down, {tr:?} DNS to {server}: {a:?}"));
            case.check(
                a.answered_by().is_none(),
                format!("tunnel down: {tr:?} DNS to {server} should not be answered, got {a:?}"),
            );
        }
    }
    std::thread::sleep(SETTLE);
    let wire = lan_tap.count_inbound(|p| p.dport == Some(53))
        + lan2_tap.count_inbound(|p| p.dport == Some(53));
    case.expect_count(
        "tunnel down: port-53 packets on eth0 and eth1 wires",
        wire,
        0,
    );
    case.expect_count(
        "tunnel down: queries reaching any resolver",
        r42.count() + other.count() - before,
        0,
    );

    t.tunnel_up().expect("tunnel up");
    start(&b, t.client(), &["--tcp"], &gw());
    for tr in [Transport::Udp, Transport::Tcp] {
        let a = q(v4(OTHER_RESOLVER_V4), tr);
        case.seen(format!("--tcp: {tr:?} DNS to 198.51.100.53: {a:?}"));
        case.check(
            a.answered_by() == Some(v4(VPN_RESOLVER_TCP)),
            format!("--tcp: {tr:?} DNS should be answered by 10.41.0.1, got {a:?}"),
        );
    }
    case.expect_count("--tcp: queries at 10.41.0.1", r41.count(), 2);
    case.pass();
}

#[test]
fn case04_ipv6() {
    let mut case = Case::begin(
        4,
        "IPv6",
        "tcp/udp/ICMPv6 echo to an internet host: nothing arrives; neighbour discovery (the client's, and the router's from its ULA and from a public LAN prefix) and a link-local ping to the router work; ULA LAN and an IPv6 gateway reachable",
    );
    let b = bin();
    let gws = vec![v4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)];
    let t = Topology::builder()
        .gateways(&gws)
        .build()
        .expect("topology");
    let host = Host::start(t.internet(), INTERNET_HOST_V6);
    let gw6 = Host::start(t.internet(), GATEWAY_V6);
    let lan6 = Host::start(t.router(), ROUTER_LAN_V6);
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();
    probe(t.client(), &host, None, &o, true).check(&mut case, "baseline without firewall", true);
    // A public prefix on the LAN too, as ISPs delegate (documentation range here).
    t.client()
        .ip(&["addr", "add", "2001:db8:100::2/64", "dev", "eth0", "nodad"])
        .expect("addr");
    t.router()
        .ip(&["addr", "add", "2001:db8:100::1/64", "dev", "lan0", "nodad"])
        .expect("addr");
    t.internet()
        .ip(&[
            "route",
            "add",
            "2001:db8:100::/64",
            "via",
            "2001:db8:ffff:1::2",
        ])
        .expect("route");

    start(&b, t.client(), &[], &gws);
    tap.clear();
    probe(t.client(), &host, None, &o, false).check(&mut case, "2001:db8:1::10", false);
    case.expect_count(
        "packets to 2001:db8:1::10 on the LAN wire",
        tap.count_inbound(|p| p.dst == host.ip),
        0,
    );

    t.client()
        .ip(&["-6", "neigh", "flush", "dev", "eth0"])
        .expect("flush");
    let ll = Topology::link_local(t.router(), "lan0").expect("router link-local");
    let e = icmp_echo(t.client(), IpAddr::V6(ll), &SendOpts::device("eth0")).expect("echo");
    case.seen(format!("link-local ping to router {ll}: {e:?}"));
    case.check(
        e == EchoOutcome::Reply,
        format!("link-local ping to the router: {e:?}"),
    );
    let ns = tap.wait_for(1, Duration::from_secs(2), |p| {
        p.inbound && p.proto == proto::ICMPV6 && p.icmp_type == Some(135)
    });
    case.expect_at_least("neighbour solicitations from the client", ns, 1);
    let neigh = t
        .client()
        .ip(&["-6", "neigh", "show", "dev", "eth0"])
        .expect("neigh");
    let resolved = neigh
        .lines()
        .any(|l| l.starts_with(&ll.to_string()) && l.contains("lladdr"));
    case.seen(format!(
        "client neighbours: {}",
        neigh.trim().replace('\n', " | ")
    ));
    case.check(
        resolved,
        "the router's link-local address is resolved (lladdr)",
    );

    for (client, label) in [
        (CLIENT_LAN_V6, "router solicits from its ULA"),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2),
            "router solicits from its global address",
        ),
    ] {
        let nd = router_nd(&t, &tap, client);
        case.seen(format!(
            "{label}: solicitations={} advertisements from the client={} entry: {}",
            nd.0, nd.1, nd.2
        ));
        case.check(
            nd.0 >= 1 && nd.1 >= 1,
            format!("{label}: the client answers"),
        );
    }

    probe(t.client(), &lan6, None, &o, true).check(&mut case, "ULA LAN fd00:1::1", true);
    probe(t.client(), &gw6, None, &o, true).check(&mut case, "IPv6 gateway 2001:db8:2::1", true);
    case.pass();
}

#[test]
fn case05_second_uplink_and_bound_sockets() {
    let mut case = Case::begin(
        5,
        "second uplink, bound sockets, moved default route",
        "traffic routed or bound to a second uplink: nothing arrives; default route moved to it after start: nothing arrives; SO_BINDTODEVICE to the default uplink (tunnel up): nothing arrives",
    );
    let b = bin();
    let other = Ipv4Addr::new(203, 0, 113, 20);
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .hosts(&[v4(other)])
        .build()
        .expect("topology");
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let host2 = Host::start(t.internet(), other);
    let host6 = Host::start(t.internet(), INTERNET_HOST_V6);
    let r2_tap = Tap::start(t.router2().expect("r2"), "lan0").expect("tap");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let eth1 = SendOpts::device("eth1");
    let eth0 = SendOpts::device("eth0");
    probe(t.client(), &host, None, &eth1, true).check(&mut case, "baseline: bound to eth1", true);

    start(&b, t.client(), &[], &gw());
    r2_tap.clear();
    lan_tap.clear();
    let tunnel = probe(
        t.client(),
        &host,
        Some(v4(CLIENT_TUN_V4)),
        &SendOpts::default(),
        true,
    );
    tunnel.check(&mut case, "control: through the tunnel", true);

    t.route_via_second_uplink(v4(other)).expect("route");
    probe(t.client(), &host2, None, &SendOpts::default(), false).check(
        &mut case,
        "203.0.113.20 routed via eth1",
        false,
    );
    probe(t.client(), &host, None, &eth1, false).check(&mut case, "bound to eth1", false);
    probe(t.client(), &host6, None, &eth1, false).check(&mut case, "IPv6 bound to eth1", false);
    probe(t.client(), &host, None, &eth0, false).check(&mut case, "bound to eth0", false);
    probe(t.client(), &host6, None, &eth0, false).check(&mut case, "IPv6 bound to eth0", false);

    t.tunnel_down().expect("down");
    t.move_default_route_to_second_uplink().expect("move");
    let d = SendOpts::default();
    probe(t.client(), &host, None, &d, false).check(&mut case, "default route moved", false);
    probe(t.client(), &host6, None, &d, false).check(&mut case, "IPv6, default moved", false);
    let wire = |p: &netns_tests::probe::tap::Packet| {
        p.dst == host.ip || p.dst == host2.ip || p.dst == host6.ip
    };
    case.expect_count(
        "packets to the hosts on the eth1 wire",
        r2_tap.count_inbound(wire),
        0,
    );
    case.expect_count(
        "packets to the hosts on the eth0 wire",
        lan_tap.count_inbound(wire),
        0,
    );
    case.pass();
}

#[test]
fn case06_tunnel_traffic_arrives() {
    let mut case = Case::begin(
        6,
        "traffic through the tunnel",
        "tcp, udp and icmp to an internet host through the tunnel: arrive (from the tunnel address), none in clear on the LAN",
    );
    let b = bin();
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    start(&b, t.client(), &[], &gw());
    let s = probe(
        t.client(),
        &host,
        Some(v4(CLIENT_TUN_V4)),
        &SendOpts::default(),
        true,
    );
    s.check(&mut case, "203.0.113.10 via tun0", true);
    let from_tun = host
        .udp
        .datagrams()
        .iter()
        .all(|d| d.from.ip() == v4(CLIENT_TUN_V4));
    case.check(from_tun, "udp arrived from the tunnel address 10.42.0.2");
    case.expect_count(
        "packets to 203.0.113.10 on the LAN wire",
        tap.count_inbound(|p| p.dst == host.ip),
        0,
    );
    case.pass();
}

#[test]
fn case07_replacement_under_load() {
    let mut case = Case::begin(
        7,
        "replacement under load",
        "200 `firewall start` with changing gateway lists while one udp packet/ms goes to an internet host: zero arrive; afterwards exactly the last list's gateways are reachable",
    );
    let b = bin();
    let pool: Vec<IpAddr> = (1..=12).map(|n| v4(gateway_v4(n))).collect();
    let t = Topology::builder()
        .gateways(&pool)
        .build()
        .expect("topology");
    let host = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, UDP_PORT)).expect("udp");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let mut rng = Rng::new("case07");
    let pick = |rng: &mut Rng| -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = pool.iter().copied().filter(|_| rng.below(2) == 0).collect();
        if v.is_empty() {
            v.push(pool[rng.below(pool.len() as u64) as usize]);
        }
        v
    };
    let first = pick(&mut rng);
    start(&b, t.client(), &[], &first);
    let stream = UdpStream::start(
        t.client(),
        sa(INTERNET_HOST_V4, UDP_PORT),
        b"load",
        Duration::from_millis(1),
        120_000,
        &SendOpts::default(),
    )
    .expect("stream");
    let began = Instant::now();
    let mut last = first;
    let mut failures = Vec::new();
    for i in 0..200 {
        last = pick(&mut rng);
        let mut args = vec!["firewall".to_string(), "start".to_string()];
        args.extend(last.iter().map(|g| g.to_string()));
        let out = b.run(t.client(), &args).expect("run");
        if !out.success() {
            failures.push(format!("#{i}: {:?} {}", out.code, out.stderr.trim()));
        }
    }
    let elapsed = began.elapsed();
    let sent = stream.stop().expect("stream");
    std::thread::sleep(SETTLE);
    case.seen(format!(
        "200 starts in {} ms; sender: {} accepted by the kernel, {} refused",
        elapsed.as_millis(),
        sent.sent,
        sent.failed
    ));
    case.check(
        failures.is_empty(),
        format!("every start exits 0: {failures:?}"),
    );
    case.check(
        sent.sent + sent.failed >= 200,
        "the sender really sent during the replacements",
    );
    case.expect_count("datagrams arriving at 203.0.113.10", host.count(), 0);
    case.expect_count(
        "packets to 203.0.113.10 on the LAN wire",
        tap.count_inbound(|p| p.dst == v4(INTERNET_HOST_V4)),
        0,
    );

    let listeners: Vec<(IpAddr, UdpListener)> = pool
        .iter()
        .map(|g| {
            (
                *g,
                UdpListener::start(t.internet(), sa(*g, 1194)).expect("udp"),
            )
        })
        .collect();
    for (g, _) in &listeners {
        udp_send(t.client(), sa(*g, 1194), b"gw", &SendOpts::default()).expect("send");
    }
    std::thread::sleep(SETTLE);
    let mut wrong = Vec::new();
    for (g, l) in &listeners {
        let expected = last.contains(g);
        let got = if expected {
            l.wait_for(1, WAIT)
        } else {
            l.count()
        };
        if (got >= 1) != expected {
            wrong.push(format!("{g}: expected {expected}, arrivals {got}"));
        }
    }
    case.seen(format!(
        "last list {:?}; gateways wrongly (un)reachable: {wrong:?}",
        last.iter().map(|g| g.to_string()).collect::<Vec<_>>()
    ));
    case.check(
        wrong.is_empty(),
        format!("exactly the last list is reachable: {wrong:?}"),
    );
    case.pass();
}

/// The sorted words of a table listing: equal for the same ruleset whatever the order in
/// which nft prints set elements.
fn words(listing: &str) -> Vec<String> {
    let mut w: Vec<String> = listing
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    w.sort();
    w
}

#[test]
fn case08_crash_atomicity() {
    let mut case = Case::begin(
        8,
        "crash atomicity",
        "SIGKILL at 50 random moments during `firewall start` (2,000 gateways): always the old or the new ruleset, never in between; whenever our table exists a probe is blocked",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let host = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, UDP_PORT)).expect("udp");
    let list = |base: u16| -> Vec<String> {
        (0..2000u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, base, 0, 0, 0, 0, i + 1).to_string())
            .chain(std::iter::once(GATEWAY_V4.to_string()))
            .collect()
    };
    let (list_a, list_b) = (list(0xa), list(0xb));
    let args = |l: &[String]| -> Vec<String> {
        ["firewall", "start"]
            .iter()
            .map(|s| s.to_string())
            .chain(l.iter().cloned())
            .collect()
    };
    let run_ok = |l: &[String]| {
        let out = b.run(t.client(), &args(l)).expect("run");
        assert!(out.success(), "start failed: {}", out.stderr);
        out.elapsed
    };
    let listing = || nft::table(t.client(), OUR_TABLE.0, OUR_TABLE.1).expect("nft");
    run_ok(&list_a);
    let ref_a = words(&listing().expect("table after start A"));
    let dur = run_ok(&list_b);
    let ref_b = words(&listing().expect("table after start B"));
    b.stop(t.client()).expect("stop");
    case.check(
        ref_a != ref_b,
        "the two gateway lists give different rulesets",
    );
    let window = (dur.as_micros() as u64).max(2_000);
    case.seen(format!(
        "one start takes {} ms; kills uniform in 0..{} us",
        dur.as_millis(),
        window
    ));

    let mut rng = Rng::new("case08");
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..50 {
        let from_a = i % 2 == 1;
        if from_a {
            run_ok(&list_a);
        } else {
            let out = b.stop(t.client()).expect("stop");
            assert!(out.success(), "stop: {}", out.stderr);
        }
        let mut running = b.spawn(t.client(), &args(&list_b)).expect("spawn");
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let killed = b.kill(&mut running);
        let _ = running.finish(Duration::from_secs(10));
        let now = listing().map(|l| words(&l));
        let state = match (&now, from_a) {
            (None, false) => "old (no table)",
            (Some(w), true) if *w == ref_a => "old (list A)",
            (Some(w), _) if *w == ref_b => "new (list B)",
            _ => "IN BETWEEN",
        };
        *tally.entry(state).or_default() += 1;
        if !killed {
            *tally
                .entry("(not killed: before exec or after exit)")
                .or_default() += 1;
        }
        let what = if state == "IN BETWEEN" {
            format!("kill #{i}: the ruleset is neither old nor new: {now:?}")
        } else {
            format!("kill #{i}: {state}")
        };
        case.check(state != "IN BETWEEN", what);
        if now.is_some() {
            host.clear();
            udp_send(
                t.client(),
                sa(INTERNET_HOST_V4, UDP_PORT),
                b"k",
                &SendOpts::default(),
            )
            .expect("send");
            std::thread::sleep(Duration::from_millis(60));
            case.check(
                host.count() == 0,
                format!("kill #{i}: our table exists but a probe arrived"),
            );
        }
    }
    case.seen(format!("states after the kills: {tally:?}"));
    case.expect_count(
        "probes that arrived while our table existed",
        host.count(),
        0,
    );
    case.pass();
}

const USER_RULES: &str = "
table inet user_fw {
    set trusted { type ipv4_addr; elements = { 192.0.2.99 } }
    chain out {
        type filter hook output priority 10; policy accept;
        ip daddr @trusted counter accept
        tcp dport 25 drop
    }
    chain inp {
        type filter hook input priority 0; policy accept;
        ct state established accept
    }
}
";

const FOREIGN_ACCEPT_ALL: &str = "
table inet foreign {
    chain early {
        type filter hook output priority -300; policy accept;
        accept
    }
}
";

#[test]
fn case09_coexistence() {
    let mut case = Case::begin(
        9,
        "coexistence with other tables",
        "a user's inet table and iptables-nft `ip filter`/`ip6 filter` chains are identical after start and after stop; a foreign earlier base chain that accepts everything opens no hole",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let c = t.client();
    nft::apply(c, USER_RULES).expect("user table");
    for args in [
        vec![
            "iptables",
            "-A",
            "OUTPUT",
            "-d",
            "192.0.2.98",
            "-j",
            "ACCEPT",
        ],
        vec!["iptables", "-N", "USERCHAIN"],
        vec![
            "iptables",
            "-A",
            "USERCHAIN",
            "-p",
            "tcp",
            "--dport",
            "25",
            "-j",
            "RETURN",
        ],
        vec![
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "192.0.2.97",
            "-j",
            "RETURN",
        ],
        vec![
            "ip6tables",
            "-A",
            "OUTPUT",
            "-d",
            "2001:db8::98",
            "-j",
            "ACCEPT",
        ],
    ] {
        c.exec_ok(args[0], &args[1..]).expect("iptables-nft");
    }
    let theirs = || -> BTreeMap<String, String> {
        nft::tables(c)
            .expect("tables")
            .into_iter()
            .filter(|tb| tb != "inet bitmask")
            .map(|tb| {
                let mut parts = tb.split_whitespace();
                let (f, n) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let text = c
                    .exec_ok("nft", &["-s", "list", "table", f, n])
                    .expect("list");
                (tb.clone(), text)
            })
            .collect()
    };
    let before = theirs();
    case.seen(format!(
        "foreign tables before: {:?}",
        before.keys().collect::<Vec<_>>()
    ));
    case.check(before.len() >= 4, "the user and iptables-nft tables exist");
    start(&b, c, &[], &gw());
    case.check(theirs() == before, "other tables identical after start");
    start(&b, c, &[], &[v4(GATEWAY_V4), v4(gateway_v4(2))]);
    case.check(
        theirs() == before,
        "other tables identical after a replacing start",
    );
    let out = b.stop(c).expect("stop");
    case.check(out.success(), "stop exits 0");
    case.check(theirs() == before, "other tables identical after stop");

    nft::apply(c, FOREIGN_ACCEPT_ALL).expect("foreign table");
    c.exec_ok("iptables", &["-I", "OUTPUT", "-j", "ACCEPT"])
        .expect("iptables");
    let before = theirs();
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    start(&b, c, &[], &gw());
    probe(c, &host, None, &SendOpts::default(), false).check(
        &mut case,
        "with accept-all chains at priority -300 and in ip filter OUTPUT",
        false,
    );
    b.stop(c).expect("stop");
    case.check(
        theirs() == before,
        "foreign tables identical after start and stop",
    );
    case.pass();
}

fn bad_command_lines(marker: &str) -> Vec<(String, Vec<String>)> {
    let gw = GATEWAY_V4.to_string();
    let mut v: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |label: &str, args: &[&str]| {
        v.push((
            label.to_string(),
            args.iter().map(|s| s.to_string()).collect(),
        ));
    };
    add("no gateway", &["firewall", "start"]);
    add("restart without gateway", &["firewall", "start", "restart"]);
    for bad in [
        "",
        " ",
        "999.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "198.51.100.1/24",
        "0x01020304",
        "01.02.03.04",
        "-1",
        "localhost",
        "example.com",
        "fe80::1%eth0",
        "::g",
        "2001:db8:::1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::",
        "ff02::1",
        "198.51.100.1 ",
    ] {
        add(
            &format!("invalid gateway {bad:?}"),
            &["firewall", "start", &gw, bad],
        );
    }
    for meta in [
        format!("198.51.100.1;touch {marker}"),
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("198.51.100.1|touch {marker}"),
        format!("198.51.100.1 && touch {marker}"),
        format!("198.51.100.1\ntouch {marker}"),
    ] {
        add(
            &format!("shell metacharacters {meta:?}"),
            &["firewall", "start", &meta],
        );
    }
    add("unknown flag", &["--bogus", "firewall", "start", &gw]);
    add(
        "unknown flag after command",
        &["firewall", "start", "--bogus", &gw],
    );
    add(
        "bad --lan",
        &["--lan", "sideways", "firewall", "start", &gw],
    );
    add("--lan without value", &["--lan"]);
    add(
        "bad --resolver",
        &["--resolver", "resolver.example", "firewall", "start", &gw],
    );
    add("unknown firewall command", &["firewall", "explode"]);
    add("unknown command", &["frobnicate"]);
    add("no command", &[]);
    v
}

#[test]
fn case10_bad_input() {
    let mut case = Case::begin(
        10,
        "bad input",
        "each invalid command line exits non-zero with one clear `bitmask-root: ` line, and the ruleset is byte-identical before and after, firewall down and up",
    );
    let b = bin();
    netns_tests::allow_huge_argv().expect("stack limit");
    let t = Topology::builder().build().expect("topology");
    let c = t.client();
    let marker = format!("/tmp/bmr-{}-pwned", std::process::id());
    let mut lines = bad_command_lines(&marker);
    let mut huge = vec!["firewall".to_string(), "start".to_string()];
    huge.extend((0..100_000u32).map(|i| {
        Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, (i >> 16) as u16, i as u16).to_string()
    }));
    lines.push(("100,000 gateways".into(), huge));
    let mut problems = Vec::new();
    for up in [false, true] {
        if up {
            start(&b, c, &[], &gw());
        }
        for (label, args) in &lines {
            let before = nft::ruleset(c).expect("ruleset");
            let out = b.run(c, args).expect("run");
            let after = nft::ruleset(c).expect("ruleset");
            let state = if up { "up" } else { "down" };
            let first = out.stderr.lines().next().unwrap_or("");
            if out.success() || out.code.is_none() {
                problems.push(format!("[{state}] {label}: exit {:?}", out.code));
            }
            if !first.starts_with("bitmask-root: ") || out.stderr.lines().count() != 1 {
                problems.push(format!("[{state}] {label}: stderr {:?}", out.stderr));
            }
            if before != after {
                problems.push(format!("[{state}] {label}: ruleset changed"));
            }
        }
        let isup = b.isup(c, &[]).expect("isup");
        case.seen(format!(
            "{} invalid command lines with the firewall {}; isup afterwards: {isup:?}",
            lines.len(),
            if up { "up" } else { "down" }
        ));
        if up != (isup == Some(0)) {
            problems.push(format!("isup after the bad lines: {isup:?}"));
        }
    }
    let pwned = std::path::Path::new(&marker).exists();
    let _ = std::fs::remove_file(&marker);
    case.check(!pwned, "no shell ran the metacharacters");
    case.seen(format!("problems: {problems:?}"));
    case.check(
        problems.is_empty(),
        format!("{} problems: {problems:?}", problems.len()),
    );
    case.pass();
}

#[test]
fn case11_isup() {
    let mut case = Case::begin(
        11,
        "isup",
        "0 when up; non-zero when down, after the table is deleted or the output chain flushed out of band, and (--compat) after the default route moved",
    );
    let b = bin();
    let t = Topology::builder()
        .second_uplink(true)
        .build()
        .expect("topology");
    let c = t.client();
    let step = |case: &mut Case, label: &str, flags: &[&str], up: bool| {
        let code = b.isup(c, flags).expect("isup");
        case.seen(format!("{label}: isup exit {code:?}"));
        let ok = if up {
            code == Some(0)
        } else {
            code.is_some_and(|x| x != 0)
        };
        case.check(
            ok,
            format!(
                "{label}: isup exit {code:?}, expected {}",
                if up { "0" } else { "non-zero" }
            ),
        );
    };
    step(&mut case, "never started", &[], false);
    start(&b, c, &[], &gw());
    step(&mut case, "started", &[], true);
    nft::nft(c, &["flush", "chain", "inet", "bitmask", "output"]).expect("flush");
    step(&mut case, "output chain flushed", &[], false);
    start(&b, c, &[], &gw());
    step(&mut case, "restarted", &[], true);
    nft::nft(c, &["delete", "table", "inet", "bitmask"]).expect("delete");
    step(&mut case, "table deleted", &[], false);
    start(&b, c, &[], &gw());
    step(&mut case, "restarted", &[], true);
    let out = b.stop(c).expect("stop");
    case.check(out.success(), "stop exits 0");
    step(&mut case, "stopped", &[], false);
    let out = b.stop(c).expect("stop");
    case.check(out.success(), "stop exits 0 when already stopped");

    start(&b, c, &["--compat"], &gw());
    step(&mut case, "--compat started", &["--compat"], true);
    t.move_default_route_to_second_uplink().expect("move");
    step(
        &mut case,
        "--compat, default route moved to eth1",
        &["--compat"],
        false,
    );
    b.stop(c).expect("stop");
    case.pass();
}

/// Flushes the router's IPv6 neighbours and makes it send to `client` (an address of the
/// client on the LAN; the router's solicitation then comes from its own address in the same
/// prefix): returns the solicitations it sent, the advertisements the client sent back, and
/// the router's neighbour entry.
fn router_nd(t: &Topology, tap: &Tap, client: Ipv6Addr) -> (usize, usize, String) {
    t.router()
        .ip(&["-6", "neigh", "flush", "dev", "lan0"])
        .expect("flush");
    tap.clear();
    let _ = udp_send(t.router(), sa(client, 9), b"nd", &SendOpts::default());
    let is_ns = |p: &Packet| !p.inbound && p.proto == proto::ICMPV6 && p.icmp_type == Some(135);
    tap.wait_for(1, WAIT, is_ns);
    let sources: Vec<IpAddr> = tap.matching(is_ns).iter().map(|p| p.src).collect();
    // Advertisements answering those solicitations (sent to their source).
    let na = tap.wait_for(1, WAIT, |p| {
        p.inbound
            && p.proto == proto::ICMPV6
            && p.icmp_type == Some(136)
            && sources.contains(&p.dst)
    });
    let ns = sources.len();

    let entry = t
        .router()
        .ip(&["-6", "neigh", "show", &client.to_string()])
        .expect("neigh");
    (ns, na, entry.trim().to_string())
}

#[test]
fn case12_lan_off() {
    let mut case = Case::begin(
        12,
        "--lan off",
        "the LAN is blocked (v4 and ULA); DHCPv4, DHCPv6 and neighbour discovery still work",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let lan = Host::start(t.router(), ROUTER_LAN_V4);
    let lan6 = Host::start(t.router(), ROUTER_LAN_V6);
    let dhcp = UdpListener::start(t.router(), sa(Ipv4Addr::UNSPECIFIED, 67)).expect("udp");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let nd = router_nd(&t, &tap, CLIENT_LAN_V6);
    case.seen(format!(
        "baseline ND without firewall: NS={} NA={} entry: {}",
        nd.0, nd.1, nd.2
    ));
    case.check(
        nd.1 >= 1,
        "baseline: the client answers neighbour solicitations",
    );
    start(&b, t.client(), &["--lan", "off"], &gw());
    let o = SendOpts::default();
    probe(t.client(), &lan, None, &o, false).check(&mut case, "LAN 192.168.1.1", false);
    probe(t.client(), &lan6, None, &o, false).check(&mut case, "LAN fd00:1::1", false);

    let d4 = SendOpts {
        broadcast: true,
        bind_device: Some("eth0".into()),
        bind_addr: Some(sa(Ipv4Addr::UNSPECIFIED, 68)),
        ..Default::default()
    };
    udp_send(
        t.client(),
        sa(Ipv4Addr::BROADCAST, 67),
        b"dhcpdiscover",
        &d4,
    )
    .expect("send");
    case.expect_count(
        "DHCPv4 discover at the router's port 67",
        dhcp.wait_for(1, WAIT),
        1,
    );
    let d6 = SendOpts {
        multicast_if: Some("eth0".into()),
        bind_addr: Some(sa(Ipv6Addr::UNSPECIFIED, 546)),
        ..Default::default()
    };
    let all_dhcp: IpAddr = "ff02::1:2".parse().expect("ip");
    udp_send(t.client(), sa(all_dhcp, 547), b"dhcpv6solicit", &d6).expect("send");
    let n = tap.wait_for(1, WAIT, |p| {
        p.inbound && p.dst == all_dhcp && p.dport == Some(547)
    });
    case.expect_count("DHCPv6 solicit on the LAN wire", n, 1);

    // Router-initiated neighbour discovery: the client must answer with an advertisement.
    let nd = router_nd(&t, &tap, CLIENT_LAN_V6);
    case.seen(format!(
        "router NS to fd00:1::2: solicitations={} advertisements from the client={} entry: {}",
        nd.0, nd.1, nd.2
    ));
    case.check(nd.0 >= 1, "the router sent a neighbour solicitation");
    case.check(
        nd.1 >= 1,
        "the client answered with a neighbour advertisement",
    );
    case.check(
        nd.2.contains("lladdr"),
        "the router resolved the client's address",
    );
    let arp = t
        .client()
        .ip(&["neigh", "show", "192.168.1.1"])
        .expect("neigh");
    case.seen(format!("client's ARP entry for the router: {}", arp.trim()));
    case.pass();
}

#[test]
fn case13_compat_leaks_documented() {
    let mut case = Case::begin(
        13,
        "--compat keeps the original's leaks (documented)",
        "with --compat: ICMPv6 to the internet, traffic bound to a second uplink, and traffic after the default route moved all LEAK (as in the original); the default profile blocks each of them",
    );
    let b = bin();
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .build()
        .expect("topology");
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let host6 = Host::start(t.internet(), INTERNET_HOST_V6);
    let c = t.client();
    let eth1 = SendOpts::device("eth1");
    let d = SendOpts::default();
    let echo6 = |case: &mut Case, label: &str| -> usize {
        host6.echo.clear();
        let e = icmp_echo(c, host6.ip, &d).expect("echo");
        std::thread::sleep(SETTLE);
        let n = host6.echo.count();
        case.seen(format!(
            "{label}: ICMPv6 echo to 2001:db8:1::10 arrivals={n} ({e:?})"
        ));
        n
    };
    let bound = |case: &mut Case, label: &str| -> usize {
        host.udp.clear();
        udp_send(c, sa(host.ip, UDP_PORT), b"eth1", &eth1).expect("send");
        std::thread::sleep(SETTLE);
        let n = host.udp.count();
        case.seen(format!("{label}: udp bound to eth1 arrivals={n}"));
        n
    };

    start(&b, c, &["--compat"], &gw());
    let leak_icmp6 = echo6(&mut case, "--compat");
    let leak_bound = bound(&mut case, "--compat");
    host.udp.clear();
    udp_send(c, sa(host.ip, UDP_PORT), b"eth0", &SendOpts::device("eth0")).expect("send");
    std::thread::sleep(SETTLE);
    case.expect_count(
        "--compat: udp bound to eth0 (the default device) arrivals",
        host.udp.count(),
        0,
    );
    case.check(leak_icmp6 >= 1, "--compat reproduces the ICMPv6 leak");
    case.check(
        leak_bound >= 1,
        "--compat reproduces the second-uplink leak",
    );

    start(&b, c, &[], &gw());
    let n = echo6(&mut case, "default");
    case.expect_count("default profile: ICMPv6 arrivals", n, 0);
    let n = bound(&mut case, "default");
    case.expect_count("default profile: eth1-bound arrivals", n, 0);

    t.tunnel_down().expect("down");
    start(&b, c, &["--compat"], &gw());
    t.move_default_route_to_second_uplink().expect("move");
    let s = probe(c, &host, None, &d, true);
    case.seen(format!(
        "--compat, default route moved: udp={} tcp={} icmp={}",
        s.udp, s.tcp, s.icmp
    ));
    case.check(
        s.udp + s.tcp >= 1,
        "--compat reproduces the moved-default-route leak",
    );
    b.stop(c).expect("stop");
    t.client()
        .ip(&[
            "route",
            "replace",
            "default",
            "via",
            "192.168.1.1",
            "dev",
            "eth0",
        ])
        .expect("route back");
    start(&b, c, &[], &gw());
    t.move_default_route_to_second_uplink().expect("move");
    probe(c, &host, None, &d, false).check(
        &mut case,
        "default profile, default route moved",
        false,
    );
    case.pass();
}

#[test]
fn case14_no_process_started() {
    let mut case = Case::begin(
        14,
        "no process started",
        "`firewall start`, a replacing start, `isup` and `stop` exec nothing (strace -f: the only execve is the binary's own)",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let dir = std::env::temp_dir();
    let gws = [GATEWAY_V4.to_string(), GATEWAY_V6.to_string()];
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("start", vec!["firewall", "start", &gws[0], &gws[1]]),
        ("replacing start", vec!["firewall", "start", &gws[0]]),
        ("isup", vec!["firewall", "isup"]),
        ("stop", vec!["firewall", "stop"]),
        ("stop when stopped", vec!["firewall", "stop"]),
    ];
    for (label, args) in runs {
        let trace = dir.join(format!(
            "bmr-{}-strace-{}.txt",
            std::process::id(),
            label.replace(' ', "_")
        ));
        let trace_s = trace.to_string_lossy().into_owned();
        let cmd = b
            .command_wrapped(
                t.client(),
                &["strace", "-f", "-qq", "-e", "trace=execve", "-o", &trace_s],
                &args,
            )
            .expect("command");
        let out = netns_tests::cmd::run(cmd, None, Duration::from_secs(60)).expect("strace");
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let _ = std::fs::remove_file(&trace);
        let execs: Vec<&str> = text.lines().filter(|l| l.contains("execve(")).collect();
        case.seen(format!(
            "{label}: exit {:?}, execve calls {}",
            out.code,
            execs.len()
        ));
        case.check(
            !text.is_empty(),
            format!(
                "{label}: strace produced a trace (stderr: {})",
                out.stderr.trim()
            ),
        );
        let own = execs
            .iter()
            .all(|l| l.contains(&*b.path().to_string_lossy()));
        case.check(
            execs.len() == 1 && own,
            format!("{label}: exactly one execve (the binary's own), got {execs:?}"),
        );
        if label != "isup" {
            case.check(
                out.success(),
                format!("{label}: exit 0, got {:?} {}", out.code, out.stderr.trim()),
            );
        }
    }
    case.pass();
}

// ---------------------------------------------------------------------------------------
// Issue 9: DNS with the resolver every desktop uses, and never outside the tunnel.

/// The `--lan` modes every DNS case runs in.
const LAN_MODES: [&[&str]; 3] = [&[], &["--lan", "on-link"], &["--lan", "off"]];

/// A link-local resolver address (as cloud instances have), routed on-link via `eth0`.
const LINK_LOCAL_RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Port-53 packets counted where they would land outside the tunnel: on the LAN side of
/// each router (what left the client's `eth0` and `eth1`) and on the internet's links to the
/// routers. Packets to a gateway are not counted (DNS to a gateway is allowed).
struct Outside {
    taps: Vec<Tap>,
    gateways: Vec<IpAddr>,
}

impl Outside {
    fn start(t: &Topology) -> Outside {
        let mut taps = vec![
            Tap::start(t.router(), "lan0").expect("tap router lan0"),
            Tap::start(t.internet(), "r1").expect("tap internet r1"),
        ];
        if let Ok(r2) = t.router2() {
            taps.push(Tap::start(r2, "lan0").expect("tap router2 lan0"));
            taps.push(Tap::start(t.internet(), "r2").expect("tap internet r2"));
        }
        Outside {
            taps,
            gateways: t.gateways().to_vec(),
        }
    }

    fn clear(&self) {
        for tap in &self.taps {
            tap.clear();
        }
    }

    /// Waits [`SETTLE`], then checks that no port-53 packet arrived on any tapped link.
    #[track_caller]
    fn expect_none(&self, case: &mut Case, label: &str) {
        std::thread::sleep(SETTLE);
        for (i, tap) in self.taps.iter().enumerate() {
            let side = ["router lan0", "internet r1", "router2 lan0", "internet r2"][i];
            let seen = tap
                .matching(|p| p.inbound && p.dport == Some(53) && !self.gateways.contains(&p.dst));
            if !seen.is_empty() {
                case.seen(format!(
                    "{label}: on {side}: {}",
                    seen.iter()
                        .map(Packet::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            case.expect_count(
                &format!("{label}: port-53 packets outside the tunnel ({side})"),
                seen.len(),
                0,
            );
        }
    }
}

/// One DNS query from the client; records what happened.
fn ask(
    case: &mut Case,
    t: &Topology,
    label: &str,
    server: IpAddr,
    tr: Transport,
) -> Option<IpAddr> {
    let a = dns_query(t.client(), sa(server, 53), tr, &SendOpts::default()).expect("query");
    case.seen(format!("{label}: {tr:?} DNS to {server}: {a:?}"));
    a.answered_by()
}

/// Queries the VPN resolver received from the client's tunnel address (masqueraded there,
/// so they came through the tunnel).
fn through_tunnel(r: &DnsResponder) -> usize {
    r.queries()
        .iter()
        .filter(|q| q.from.ip() == v4(CLIENT_TUN_V4))
        .count()
}

/// `firewall isup`: its exit code and its line.
fn isup_line(t: &Topology) -> (Option<i32>, String) {
    let out = bin().run(t.client(), &["firewall", "isup"]).expect("isup");
    (
        out.code,
        format!("{}{}", out.stdout, out.stderr).trim().to_string(),
    )
}

#[test]
fn case15_dns_to_the_lan_router_answered_through_the_tunnel() {
    let mut case = Case::begin(
        15,
        "DNS to the LAN router answered by the VPN resolver",
        "udp/tcp DNS to the LAN router 192.168.1.1 (what DHCP hands out) and to a link-local resolver: answered by 10.42.0.1 through the tunnel, in every --lan mode; no port-53 packet on the LAN or the internet; the router's DNS server gets nothing; DNS to a gateway and to 127.0.0.53 unchanged; isup 0 with no DNS warning",
    );
    let b = bin();
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let r42 = DnsResponder::start(t.vpn().expect("vpn"), v4(VPN_RESOLVER)).expect("dns");
    let at_router = DnsResponder::start(t.router(), v4(ROUTER_LAN_V4)).expect("dns");
    let at_gw = DnsResponder::start(t.internet(), v4(GATEWAY_V4)).expect("dns");
    let local = DnsResponder::start(t.client(), "127.0.0.53".parse().expect("ip")).expect("dns");
    t.client()
        .ip(&["route", "add", "169.254.0.0/16", "dev", "eth0"])
        .expect("link-local route");
    let outside = Outside::start(&t);

    // Without the firewall the router answers itself, and the taps see it: the probes can
    // tell a leak.
    for tr in [Transport::Udp, Transport::Tcp] {
        let by = ask(&mut case, &t, "no firewall", v4(ROUTER_LAN_V4), tr);
        case.check(
            by == Some(v4(ROUTER_LAN_V4)),
            format!("no firewall: {tr:?} DNS to the router answered by it, got {by:?}"),
        );
    }
    std::thread::sleep(SETTLE);
    let wire = outside.taps[0].count_inbound(|p| p.dport == Some(53));
    case.expect_at_least("no firewall: port-53 packets on the router's lan0", wire, 2);

    for flags in LAN_MODES {
        let mode = format!("firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let (router_before, tunnel_before) = (at_router.count(), through_tunnel(&r42));
        for server in [v4(ROUTER_LAN_V4), v4(LINK_LOCAL_RESOLVER)] {
            for tr in [Transport::Udp, Transport::Tcp] {
                let by = ask(&mut case, &t, &mode, server, tr);
                case.check(
                    by == Some(v4(VPN_RESOLVER)),
                    format!("{mode}: {tr:?} DNS to {server} should be answered by 10.42.0.1, got {by:?}"),
                );
            }
        }
        case.expect_count(
            &format!("{mode}: queries at 10.42.0.1 from the tunnel address"),
            through_tunnel(&r42) - tunnel_before,
            4,
        );
        case.expect_count(
            &format!("{mode}: queries at the router's DNS server"),
            at_router.count() - router_before,
            0,
        );
        outside.expect_none(&mut case, &mode);

        let (gw_before, local_before) = (at_gw.count(), local.count());
        for tr in [Transport::Udp, Transport::Tcp] {
            let by = ask(&mut case, &t, &mode, v4(GATEWAY_V4), tr);
            case.check(
                by == Some(v4(GATEWAY_V4)),
                format!("{mode}: {tr:?} DNS to the gateway should not be rewritten, got {by:?}"),
            );
            let stub: IpAddr = "127.0.0.53".parse().expect("ip");
            let by = ask(&mut case, &t, &mode, stub, tr);
            case.check(
                by == Some(stub),
                format!("{mode}: {tr:?} DNS to 127.0.0.53 should stay local, got {by:?}"),
            );
        }
        case.expect_count(
            &format!("{mode}: queries at the gateway"),
            at_gw.count() - gw_before,
            2,
        );
        case.expect_count(
            &format!("{mode}: queries at 127.0.0.53"),
            local.count() - local_before,
            2,
        );
        let (code, line) = isup_line(&t);
        case.seen(format!("{mode}: isup {code:?}: {line}"));
        case.check(
            code == Some(0) && !line.contains("DNS will fail"),
            format!("{mode}: isup exits 0 without a DNS warning, got {code:?}: {line}"),
        );
    }
    case.pass();
}

#[test]
fn case16_desktop_stub_resolver_forwarding_to_the_lan_router() {
    let mut case = Case::begin(
        16,
        "a desktop's stub resolver forwarding to the LAN router",
        "a real dnsmasq on 127.0.0.53 in the client (as systemd-resolved) forwarding to a real dnsmasq on the LAN router: lookups through the stub, udp and tcp, are answered by 10.42.0.1 through the tunnel in every --lan mode; nothing reaches the router's port 53",
    );
    let b = bin();
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let r42 = DnsResponder::start(t.vpn().expect("vpn"), v4(VPN_RESOLVER)).expect("dns");
    let _router_dns =
        Dnsmasq::answering_with_own_address(t.router(), v4(ROUTER_LAN_V4)).expect("router dnsmasq");
    let stub_addr: IpAddr = "127.0.0.53".parse().expect("ip");
    let _stub = Dnsmasq::stub(t.client(), stub_addr, v4(ROUTER_LAN_V4)).expect("stub dnsmasq");
    let outside = Outside::start(&t);

    // Without the firewall the stub's lookups are answered by the router's dnsmasq.
    for tr in [Transport::Udp, Transport::Tcp] {
        let by = ask(
            &mut case,
            &t,
            "no firewall, through the stub",
            stub_addr,
            tr,
        );
        case.check(
            by == Some(v4(ROUTER_LAN_V4)),
            format!(
                "no firewall: {tr:?} lookup through the stub answered by the router, got {by:?}"
            ),
        );
    }
    std::thread::sleep(SETTLE);
    let wire = outside.taps[0].count_inbound(|p| p.dport == Some(53));
    case.expect_at_least("no firewall: port-53 packets on the router's lan0", wire, 2);

    for flags in LAN_MODES {
        let mode = format!("firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let before = through_tunnel(&r42);
        for tr in [Transport::Udp, Transport::Tcp] {
            let by = ask(
                &mut case,
                &t,
                &format!("{mode}, through the stub"),
                stub_addr,
                tr,
            );
            case.check(
                by == Some(v4(VPN_RESOLVER)),
                format!("{mode}: {tr:?} lookup through the stub should be answered by 10.42.0.1, got {by:?}"),
            );
        }
        case.expect_at_least(
            &format!("{mode}: the stub's queries at 10.42.0.1 from the tunnel address"),
            through_tunnel(&r42) - before,
            2,
        );
        outside.expect_none(&mut case, &mode);
    }
    case.pass();
}

/// Queries that must fail, udp and tcp, with nothing leaving outside the tunnel; `servers`
/// are the original destinations.
fn expect_dns_fails(case: &mut Case, t: &Topology, label: &str, servers: &[IpAddr]) {
    for server in servers {
        for tr in [Transport::Udp, Transport::Tcp] {
            let by = ask(case, t, label, *server, tr);
            case.check(
                by.is_none(),
                format!("{label}: {tr:?} DNS to {server} must fail, answered by {by:?}"),
            );
        }
    }
}

#[test]
fn case17_resolver_routed_outside_the_tunnel() {
    let mut case = Case::begin(
        17,
        "resolver routed outside the tunnel",
        "a host route for 10.42.0.1 via the uplink, then a LAN on 10.42.0.0/24 (NetworkManager's shared networks) whose route wins: udp/tcp DNS to a public resolver, the LAN router, a neighbour and the resolver fails in every --lan mode, no port-53 packet on any LAN or the internet; isup 0 and says where the resolver is routed; with the route back through the tunnel DNS works again",
    );
    let b = bin();
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .build()
        .expect("topology");
    let r42 = DnsResponder::start(t.vpn().expect("vpn"), v4(VPN_RESOLVER)).expect("dns");
    let other = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    let at_router = DnsResponder::start(t.router(), v4(ROUTER_LAN_V4)).expect("dns");
    let outside = Outside::start(&t);
    let servers = [v4(OTHER_RESOLVER_V4), v4(ROUTER_LAN_V4), v4(VPN_RESOLVER)];

    // 1. A host route for the resolver via the uplink.
    t.client()
        .ip(&[
            "route",
            "add",
            "10.42.0.1/32",
            "via",
            "192.168.1.1",
            "dev",
            "eth0",
        ])
        .expect("host route");
    for flags in LAN_MODES {
        let mode = format!("host route via eth0, firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let before = r42.count() + other.count() + at_router.count();
        expect_dns_fails(&mut case, &t, &mode, &servers);
        outside.expect_none(&mut case, &mode);
        case.expect_count(
            &format!("{mode}: queries at any resolver"),
            r42.count() + other.count() + at_router.count() - before,
            0,
        );
        let (code, line) = isup_line(&t);
        case.seen(format!("{mode}: isup {code:?}: {line}"));
        case.check(
            code == Some(0)
                && line.contains("DNS will fail: 10.42.0.1 is routed via eth0, not the tunnel"),
            format!(
                "{mode}: isup exits 0 and says where the resolver is routed, got {code:?}: {line}"
            ),
        );
    }
    t.client()
        .ip(&["route", "del", "10.42.0.1/32"])
        .expect("del host route");
    let by = ask(
        &mut case,
        &t,
        "host route removed",
        v4(OTHER_RESOLVER_V4),
        Transport::Udp,
    );
    case.check(
        by == Some(v4(VPN_RESOLVER)),
        format!("host route removed: DNS answered by 10.42.0.1 again, got {by:?}"),
    );

    // 2. A LAN on the resolver's range, joined before the tunnel came up: its route wins.
    let hotspot = t.router2().expect("router2");
    hotspot
        .ip(&["addr", "add", "10.42.0.1/24", "dev", "lan0"])
        .expect("hotspot address");
    let at_hotspot = DnsResponder::start(hotspot, v4(VPN_RESOLVER)).expect("hotspot dns");
    t.client()
        .ip_batch(&[
            "addr del 10.42.0.2/24 dev tun0".into(),
            "addr add 10.42.0.57/24 dev eth1".into(),
            "addr add 10.42.0.2/24 dev tun0".into(),
        ])
        .expect("hotspot LAN");
    t.tunnel_up().expect("tunnel routes");
    let route = t
        .client()
        .ip(&["-4", "route", "get", "10.42.0.1"])
        .expect("route get");
    case.seen(format!(
        "LAN on 10.42.0.0/24: ip route get 10.42.0.1: {}",
        route.trim()
    ));
    case.check(
        route.contains("dev eth1"),
        format!("the hotspot LAN's route wins for 10.42.0.1: {route}"),
    );
    let neighbour = v4(Ipv4Addr::new(10, 42, 0, 53));
    for flags in LAN_MODES {
        let mode = format!("LAN on 10.42.0.0/24, firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let before = r42.count() + other.count() + at_router.count() + at_hotspot.count();
        expect_dns_fails(
            &mut case,
            &t,
            &mode,
            &[v4(OTHER_RESOLVER_V4), v4(ROUTER_LAN_V4), neighbour],
        );
        outside.expect_none(&mut case, &mode);
        case.expect_count(
            &format!("{mode}: queries at any resolver (the hotspot's included)"),
            r42.count() + other.count() + at_router.count() + at_hotspot.count() - before,
            0,
        );
        let (code, line) = isup_line(&t);
        case.seen(format!("{mode}: isup {code:?}: {line}"));
        case.check(
            code == Some(0)
                && line.contains("DNS will fail: 10.42.0.1 is routed via eth1, not the tunnel"),
            format!(
                "{mode}: isup exits 0 and says where the resolver is routed, got {code:?}: {line}"
            ),
        );
    }
    case.pass();
}

#[test]
fn case18_second_uplink_dns() {
    let mut case = Case::begin(
        18,
        "DNS and the second uplink",
        "udp/tcp DNS to the second uplink's router and to a resolver routed via the second uplink: answered by 10.42.0.1 through the tunnel; with the resolver 10.42.0.1 itself routed via the second uplink: DNS fails, isup says so; in every --lan mode no port-53 packet on either LAN or the internet",
    );
    let b = bin();
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .build()
        .expect("topology");
    let r42 = DnsResponder::start(t.vpn().expect("vpn"), v4(VPN_RESOLVER)).expect("dns");
    let at_router2 =
        DnsResponder::start(t.router2().expect("router2"), v4(ROUTER2_LAN_V4)).expect("dns");
    let other = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    let outside = Outside::start(&t);
    t.route_via_second_uplink(v4(OTHER_RESOLVER_V4))
        .expect("route via eth1");

    for flags in LAN_MODES {
        let mode = format!("firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let before = through_tunnel(&r42);
        for server in [v4(ROUTER2_LAN_V4), v4(OTHER_RESOLVER_V4)] {
            for tr in [Transport::Udp, Transport::Tcp] {
                let by = ask(&mut case, &t, &mode, server, tr);
                case.check(
                    by == Some(v4(VPN_RESOLVER)),
                    format!("{mode}: {tr:?} DNS to {server} (via eth1) should be answered by 10.42.0.1, got {by:?}"),
                );
            }
        }
        case.expect_count(
            &format!("{mode}: queries at 10.42.0.1 from the tunnel address"),
            through_tunnel(&r42) - before,
            4,
        );
        outside.expect_none(&mut case, &mode);
    }
    case.expect_count(
        "queries at the second router's and the other resolver's port 53",
        at_router2.count() + other.count(),
        0,
    );

    t.route_via_second_uplink(v4(VPN_RESOLVER))
        .expect("resolver via eth1");
    for flags in LAN_MODES {
        let mode = format!("resolver via eth1, firewall {flags:?}");
        start(&b, t.client(), flags, &gw());
        outside.clear();
        let before = r42.count() + at_router2.count() + other.count();
        expect_dns_fails(
            &mut case,
            &t,
            &mode,
            &[v4(ROUTER_LAN_V4), v4(ROUTER2_LAN_V4), v4(OTHER_RESOLVER_V4)],
        );
        outside.expect_none(&mut case, &mode);
        case.expect_count(
            &format!("{mode}: queries at any resolver"),
            r42.count() + at_router2.count() + other.count() - before,
            0,
        );
        let (code, line) = isup_line(&t);
        case.seen(format!("{mode}: isup {code:?}: {line}"));
        case.check(
            code == Some(0)
                && line.contains("DNS will fail: 10.42.0.1 is routed via eth1, not the tunnel"),
            format!(
                "{mode}: isup exits 0 and says where the resolver is routed, got {code:?}: {line}"
            ),
        );
    }
    case.pass();
}

#[test]
fn case19_dns_with_the_tunnel_down() {
    let mut case = Case::begin(
        19,
        "DNS with the tunnel down",
        "tunnel down: udp/tcp DNS to the LAN router, the second router, a public resolver, a link-local resolver and 10.42.0.1 fails in every --lan mode (udp at once with EPERM), no port-53 packet on either LAN or the internet, no resolver gets a query; isup 0 and says the resolver is routed via eth0; tunnel up again: DNS to the LAN router answered by 10.42.0.1",
    );
    let b = bin();
    let t = Topology::builder()
        .tunnel(true)
        .second_uplink(true)
        .build()
        .expect("topology");
    let r42 = DnsResponder::start(t.vpn().expect("vpn"), v4(VPN_RESOLVER)).expect("dns");
    let at_router = DnsResponder::start(t.router(), v4(ROUTER_LAN_V4)).expect("dns");
    let at_router2 =
        DnsResponder::start(t.router2().expect("router2"), v4(ROUTER2_LAN_V4)).expect("dns");
    let other = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    t.client()
        .ip(&["route", "add", "169.254.0.0/16", "dev", "eth0"])
        .expect("link-local route");
    let outside = Outside::start(&t);
    let all = || r42.count() + at_router.count() + at_router2.count() + other.count();

    for flags in LAN_MODES {
        let mode = format!("tunnel down, firewall {flags:?}");
        t.tunnel_up().expect("up");
        start(&b, t.client(), flags, &gw());
        t.tunnel_down().expect("down");
        outside.clear();
        let before = all();
        let servers = [
            v4(ROUTER_LAN_V4),
            v4(ROUTER2_LAN_V4),
            v4(OTHER_RESOLVER_V4),
            v4(LINK_LOCAL_RESOLVER),
            v4(VPN_RESOLVER),
        ];
        expect_dns_fails(&mut case, &t, &mode, &servers);
        let udp = dns_query(
            t.client(),
            sa(v4(ROUTER_LAN_V4), 53),
            Transport::Udp,
            &SendOpts::default(),
        )
        .expect("query");
        case.check(
            matches!(&udp, netns_tests::probe::dns::DnsOutcome::SendFailed(e) if e.contains("not permitted")),
            format!("{mode}: a udp query fails on send with EPERM, got {udp:?}"),
        );
        outside.expect_none(&mut case, &mode);
        case.expect_count(
            &format!("{mode}: queries at any resolver"),
            all() - before,
            0,
        );
        let (code, line) = isup_line(&t);
        case.seen(format!("{mode}: isup {code:?}: {line}"));
        case.check(
            code == Some(0)
                && line.contains("DNS will fail: 10.42.0.1 is routed via eth0, not the tunnel"),
            format!(
                "{mode}: isup exits 0 and says where the resolver is routed, got {code:?}: {line}"
            ),
        );
    }
    t.tunnel_up().expect("up");
    let by = ask(
        &mut case,
        &t,
        "tunnel up again",
        v4(ROUTER_LAN_V4),
        Transport::Udp,
    );
    case.check(
        by == Some(v4(VPN_RESOLVER)),
        format!("tunnel up again: DNS to the LAN router answered by 10.42.0.1, got {by:?}"),
    );
    case.pass();
}
