//! `firewall block`: the kill switch with no gateway, against the real kernel in throwaway
//! namespaces. Nothing but the LAN, DHCP and neighbour discovery leaves (counted where the
//! packets land); `firewall start GATEWAY` after it opens the gateway with no window, under a
//! flood of one packet per millisecond per sender.
//!
//! Run with `cargo test -p netns-tests --test block` after `cargo build` (as root).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::*;
use netns_tests::addr::*;
use netns_tests::nft;
use netns_tests::probe::dns::{dns_query, DnsOutcome, DnsResponder, Transport};
use netns_tests::probe::tap::{proto, Packet, Tap};
use netns_tests::probe::udp::{udp_send, UdpListener, UdpStream};
use netns_tests::probe::SETTLE;
use netns_tests::report::Case;
use netns_tests::{BitmaskRoot, Netns, SendOpts, Topology};

/// Whether a packet the client sent onto the LAN is local traffic that `firewall block`
/// lets out: to the LAN's prefixes, link-local or link-scope multicast (neighbour discovery,
/// MLD, DHCPv6), the IPv4 broadcast (DHCP), or the SSDP and mDNS groups.
fn is_local(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[0], o[1], o[2]) == (192, 168, 1)
                || a == Ipv4Addr::BROADCAST
                || a == Ipv4Addr::new(224, 0, 0, 251)
                || a == Ipv4Addr::new(239, 255, 255, 250)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (s[0], s[1], s[2], s[3]) == (0xfd00, 1, 0, 0)
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xff0f) == 0xff02
        }
    }
}

/// The packets the client sent onto the LAN wire that are not local (see [`is_local`]) and
/// not allowed by `also`.
fn leaks(tap: &Tap, also: impl Fn(&Packet) -> bool) -> Vec<String> {
    tap.matching(|p| p.inbound && !is_local(p.dst) && !also(p))
        .iter()
        .map(Packet::describe)
        .collect()
}

/// Runs the binary; panics unless it exits 0.
fn ok(b: &BitmaskRoot, ns: &Netns, args: &[&str]) -> String {
    let out = b.run(ns, args).expect("run");
    assert!(
        out.success(),
        "bitmask-root {}: exit {:?}: {}",
        args.join(" "),
        out.code,
        out.stderr.trim()
    );
    out.stdout
}

/// `firewall isup`: exit code and what it said.
fn isup(b: &BitmaskRoot, ns: &Netns) -> (Option<i32>, String) {
    let out = b.run(ns, &["firewall", "isup"]).expect("isup");
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

/// Flushes the router's IPv6 neighbours and makes it solicit `client`; returns whether the
/// client answered with a neighbour advertisement.
fn client_answers_nd(t: &Topology, tap: &Tap, client: Ipv6Addr) -> bool {
    t.router()
        .ip(&["-6", "neigh", "flush", "dev", "lan0"])
        .expect("flush");
    tap.clear();
    let _ = udp_send(t.router(), sa(client, 9), b"nd", &SendOpts::default());
    let is_ns = |p: &Packet| !p.inbound && p.proto == proto::ICMPV6 && p.icmp_type == Some(135);
    tap.wait_for(1, WAIT, is_ns);
    let sources: Vec<IpAddr> = tap.matching(is_ns).iter().map(|p| p.src).collect();
    tap.wait_for(1, WAIT, |p| {
        p.inbound
            && p.proto == proto::ICMPV6
            && p.icmp_type == Some(136)
            && sources.contains(&p.dst)
    }) >= 1
}

/// A DHCPv4 discover from port 68 to the broadcast address, out of eth0: whether it reached
/// the router's port 67.
fn dhcp4_arrives(t: &Topology, dhcp: &UdpListener) -> bool {
    dhcp.clear();
    let opts = SendOpts {
        broadcast: true,
        bind_device: Some("eth0".into()),
        bind_addr: Some(sa(Ipv4Addr::UNSPECIFIED, 68)),
        ..Default::default()
    };
    udp_send(
        t.client(),
        sa(Ipv4Addr::BROADCAST, 67),
        b"dhcpdiscover",
        &opts,
    )
    .expect("send");
    dhcp.wait_for(1, WAIT) >= 1
}

/// A DHCPv6 solicit to ff02::1:2 port 547 from port 546: whether it was on the LAN wire.
fn dhcp6_leaves(t: &Topology, tap: &Tap) -> bool {
    let opts = SendOpts {
        multicast_if: Some("eth0".into()),
        bind_addr: Some(sa(Ipv6Addr::UNSPECIFIED, 546)),
        ..Default::default()
    };
    let all_dhcp: IpAddr = "ff02::1:2".parse().expect("ip");
    udp_send(t.client(), sa(all_dhcp, 547), b"dhcpv6solicit", &opts).expect("send");
    tap.wait_for(1, WAIT, |p| {
        p.inbound && p.dst == all_dhcp && p.dport == Some(547)
    }) >= 1
}

#[test]
fn block_lets_out_only_the_lan_dhcp_and_neighbour_discovery() {
    let mut case = Case::begin(
        101,
        "firewall block",
        "no gateway open: to the internet, a would-be gateway and a foreign resolver nothing arrives (udp, tcp, icmp, v4 and v6, DNS); the LAN, DHCPv4, DHCPv6 and neighbour discovery work; every packet on the LAN wire is local",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let c = t.client();
    let internet = Host::start(t.internet(), INTERNET_HOST_V4);
    let internet6 = Host::start(t.internet(), INTERNET_HOST_V6);
    let gateway = Host::start(t.internet(), GATEWAY_V4);
    let lan = Host::start(t.router(), ROUTER_LAN_V4);
    let lan6 = Host::start(t.router(), ROUTER_LAN_V6);
    let resolver = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    let dhcp = UdpListener::start(t.router(), sa(Ipv4Addr::UNSPECIFIED, 67)).expect("udp");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();

    probe(c, &internet, None, &o, true).check(&mut case, "baseline without firewall", true);

    let said = ok(&b, c, &["firewall", "block"]);
    case.seen(format!("firewall block: {}", said.trim()));
    case.check(
        said.contains("firewall blocking (no gateway"),
        format!("block says what it did: {said:?}"),
    );
    // The kernel holds exactly the plan that --dry-run shows.
    let plan = ok(&b, c, &["--dry-run", "firewall", "block"]);
    let kernel = nft::table(c, "inet", "bitmask")
        .expect("nft")
        .expect("our table");
    case.check(
        nft::fresh_counters(&kernel) == plan,
        "the kernel lists exactly the --dry-run plan",
    );
    case.check(
        !kernel.contains("@gateways") && kernel.contains("; mode block;"),
        "no gateway set; the comment records the block",
    );
    let (code, text) = isup(&b, c);
    case.seen(format!("isup: {code:?} {}", text.trim()));
    case.check(
        code == Some(0) && text.contains("blocked (no gateway"),
        "isup exits 0 and says the firewall blocks",
    );

    tap.clear();
    probe(c, &internet, None, &o, false).check(&mut case, "internet 203.0.113.10", false);
    probe(c, &internet6, None, &o, false).check(&mut case, "internet 2001:db8:1::10", false);
    probe(c, &gateway, None, &o, false).check(&mut case, "would-be gateway 198.51.100.1", false);
    for transport in [Transport::Udp, Transport::Tcp] {
        let outcome = dns_query(c, sa(OTHER_RESOLVER_V4, 53), transport, &o).expect("dns");
        case.seen(format!(
            "DNS over {transport:?} to 198.51.100.53: {outcome:?}"
        ));
        case.check(
            !matches!(outcome, DnsOutcome::Answered { .. }),
            format!("DNS over {transport:?} is not answered"),
        );
    }
    std::thread::sleep(SETTLE);
    case.expect_count("queries at the foreign resolver", resolver.count(), 0);

    probe(c, &lan, None, &o, true).check(&mut case, "LAN 192.168.1.1", true);
    probe(c, &lan6, None, &o, true).check(&mut case, "LAN fd00:1::1", true);
    case.check(
        dhcp4_arrives(&t, &dhcp),
        "DHCPv4 discover reaches the router",
    );
    case.check(dhcp6_leaves(&t, &tap), "DHCPv6 solicit leaves");
    case.check(
        client_answers_nd(&t, &tap, CLIENT_LAN_V6),
        "the client answers the router's neighbour solicitation",
    );

    let leaked = leaks(&tap, |_| false);
    case.seen(format!("non-local packets on the LAN wire: {leaked:?}"));
    case.check(
        leaked.is_empty(),
        format!("only local packets leave: {leaked:?}"),
    );

    // stop works on a blocking firewall as on a started one.
    let said = ok(&b, c, &["firewall", "stop"]);
    case.check(said.contains("stopped"), format!("stop: {said:?}"));
    probe(c, &internet, None, &o, true).check(&mut case, "after stop", true);
    case.pass();
}

#[test]
fn block_with_lan_off_keeps_dhcp_and_neighbour_discovery() {
    let mut case = Case::begin(
        102,
        "firewall block --lan off",
        "the LAN is blocked too (v4 and ULA); DHCPv4, DHCPv6 and neighbour discovery still work",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let c = t.client();
    let lan = Host::start(t.router(), ROUTER_LAN_V4);
    let lan6 = Host::start(t.router(), ROUTER_LAN_V6);
    let dhcp = UdpListener::start(t.router(), sa(Ipv4Addr::UNSPECIFIED, 67)).expect("udp");
    let tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();
    ok(&b, c, &["--lan", "off", "firewall", "block"]);
    let (code, text) = isup(&b, c);
    case.check(
        code == Some(0) && text.contains("LAN off"),
        format!("isup: {code:?} {text}"),
    );
    probe(c, &lan, None, &o, false).check(&mut case, "LAN 192.168.1.1", false);
    probe(c, &lan6, None, &o, false).check(&mut case, "LAN fd00:1::1", false);
    case.check(
        dhcp4_arrives(&t, &dhcp),
        "DHCPv4 discover reaches the router",
    );
    case.check(dhcp6_leaves(&t, &tap), "DHCPv6 solicit leaves");
    case.check(
        client_answers_nd(&t, &tap, CLIENT_LAN_V6),
        "the client answers the router's neighbour solicitation",
    );
    case.pass();
}

#[test]
fn block_refuses_arguments_and_changes_nothing() {
    let mut case = Case::begin(
        103,
        "firewall block refusals",
        "block with a gateway, restart, an option after it or two words: exit 2, one line, the ruleset byte-identical, firewall down, blocking and started",
    );
    let b = bin();
    let t = Topology::builder().build().expect("topology");
    let c = t.client();
    let mut problems = Vec::new();
    for state in ["down", "blocking", "started"] {
        match state {
            "blocking" => {
                ok(&b, c, &["firewall", "block"]);
            }
            "started" => start(&b, c, &[], &[v4(GATEWAY_V4)]),
            _ => {}
        }
        let before = nft::ruleset(c).expect("ruleset");
        for args in [
            &["firewall", "block", "198.51.100.7"][..],
            &["firewall", "block", "restart"][..],
            &["firewall", "block", "--lan", "off"][..],
            &["firewall", "block", "x", "y"][..],
            &["--lan", "nowhere", "firewall", "block"][..],
            &["--udp=1", "firewall", "block"][..],
        ] {
            let out = b.run(c, args).expect("run");
            let lines = out.stderr.trim_end().lines().count();
            if out.code != Some(2)
                || !out.stderr.starts_with("bitmask-root: ")
                || lines != 1
                || !out.stdout.is_empty()
            {
                problems.push(format!(
                    "[{state}] {args:?}: exit {:?}, stderr {:?}",
                    out.code, out.stderr
                ));
            }
        }
        if nft::ruleset(c).expect("ruleset") != before {
            problems.push(format!("[{state}] the ruleset changed"));
        }
    }
    case.seen(format!("problems: {problems:?}"));
    case.check(problems.is_empty(), format!("{problems:?}"));
    case.pass();
}

#[test]
fn start_after_block_opens_the_gateway_with_no_window() {
    const ROUNDS: usize = 10;
    let mut case = Case::begin(
        104,
        "block, then start, under load",
        "block and start GW alternate while one udp packet/ms goes, per sender, out of eth0 to an internet host (v4 and v6), to the gateway and through the tunnel: on the LAN wire only local packets and packets to the gateway; the gateway opens with start and closes with block",
    );
    let b = bin();
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let c = t.client();
    let vpn = t.vpn().expect("vpn");
    let host = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, UDP_PORT)).expect("udp");
    let host6 = UdpListener::start(t.internet(), sa(INTERNET_HOST_V6, UDP_PORT)).expect("udp");
    let gw = UdpListener::start(t.internet(), sa(GATEWAY_V4, 1194)).expect("udp");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let tun_tap = Tap::start(vpn, "tunpeer").expect("tap");

    // Without a firewall, datagrams bound to eth0 do reach the internet hosts: the senders
    // below would be counted if they leaked.
    let eth0 = SendOpts::device("eth0");
    for (to, listener) in [
        (v4(INTERNET_HOST_V4), &host),
        (INTERNET_HOST_V6.into(), &host6),
    ] {
        udp_send(c, sa(to, UDP_PORT), b"baseline", &eth0).expect("send");
        case.check(
            listener.wait_for(1, WAIT) >= 1,
            format!("baseline: a datagram out of eth0 reaches {to}"),
        );
    }
    lan_tap.clear();

    ok(&b, c, &["firewall", "block"]);
    let stream = |to: SocketAddr, payload: &[u8], opts: &SendOpts| {
        UdpStream::start(c, to, payload, Duration::from_millis(1), 30_000, opts).expect("stream")
    };
    let leak4 = stream(sa(INTERNET_HOST_V4, UDP_PORT), b"leak4", &eth0);
    let leak6 = stream(sa(INTERNET_HOST_V6, UDP_PORT), b"leak6", &eth0);
    let to_gw = stream(sa(GATEWAY_V4, 1194), b"gateway", &SendOpts::default());
    let tunnel = stream(
        sa(INTERNET_HOST_V4, UDP_PORT + 1),
        b"tunnel",
        &SendOpts::default(),
    );
    let mut failures = Vec::new();
    let mut gateway_opened = 0;
    let mut gateway_closed = 0;
    for round in 0..ROUNDS {
        for (args, open) in [
            (&["firewall", "start", "198.51.100.1"][..], true),
            (&["firewall", "block"][..], false),
        ] {
            let out = b.run(c, args).expect("run");
            if !out.success() {
                failures.push(format!(
                    "#{round} {args:?}: {:?} {}",
                    out.code,
                    out.stderr.trim()
                ));
            }
            // After the switch the gateway is open exactly when started. (After a block, the
            // datagrams that arrived before it are let drain first.)
            if !open {
                std::thread::sleep(SETTLE);
            }
            gw.clear();
            let arrived = gw.wait_for(1, if open { WAIT } else { SETTLE }) >= 1;
            if arrived == open {
                if open {
                    gateway_opened += 1
                } else {
                    gateway_closed += 1
                }
            }
        }
    }
    let sent = [leak4, leak6, to_gw, tunnel].map(|s| s.stop().expect("stream"));
    std::thread::sleep(SETTLE);
    case.seen(format!(
        "{ROUNDS} rounds of start and block; senders (accepted, refused by the kernel): {:?}",
        sent.iter().map(|s| (s.sent, s.failed)).collect::<Vec<_>>()
    ));
    case.check(
        failures.is_empty(),
        format!("every switch exits 0: {failures:?}"),
    );
    case.check(
        sent.iter().all(|s| s.sent + s.failed >= ROUNDS * 2),
        "every sender really sent during the switches",
    );
    case.expect_count(
        "datagrams from eth0 arriving at 203.0.113.10",
        host.count_payload(b"leak4"),
        0,
    );
    case.expect_count(
        "datagrams from eth0 arriving at 2001:db8:1::10",
        host6.count_payload(b"leak6"),
        0,
    );
    let leaked = leaks(&lan_tap, |p| p.dst == v4(GATEWAY_V4));
    case.seen(format!(
        "LAN wire, not local and not to the gateway: {leaked:?}"
    ));
    case.check(
        leaked.is_empty(),
        format!("nothing but local packets and packets to the gateway on the LAN wire: {leaked:?}"),
    );
    let through_tunnel = tun_tap.count(|p| p.dport == Some(UDP_PORT + 1));
    case.seen(format!(
        "through the tunnel: {through_tunnel}; gateway open after {gateway_opened}/{ROUNDS} starts, closed after {gateway_closed}/{ROUNDS} blocks"
    ));
    case.check(through_tunnel >= 1, "the tunnel carries traffic throughout");
    case.check(
        gateway_opened == ROUNDS && gateway_closed == ROUNDS,
        "the gateway opens with every start and closes with every block",
    );
    case.pass();
}
