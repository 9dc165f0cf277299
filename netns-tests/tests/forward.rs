//! The leak matrix's forwarding classes (issue 10): a container behind Docker's default
//! bridge and a VM on a libvirt-style routed network (no masquerade), both in the client
//! namespace, which forwards for them; Docker's and libvirt's rules loaded with the real
//! `iptables-nft-restore` inside the client namespace only. Packets are counted where they
//! land. Each case appends a line to `$LEAK_REPORT_JSONL`, like `leak_matrix.rs`.
//!
//! Run with `cargo xtask netns-test`, or `cargo test -p netns-tests --test forward` after
//! `cargo build` (as root).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use netns_tests::addr::*;
use netns_tests::container::{enable_forwarding, Bridge, Guest};
use netns_tests::probe::dns::{dns_query, DnsResponder, Transport};
use netns_tests::probe::raw::{raw_send, EXPERIMENTAL_PROTO};
use netns_tests::probe::tap::{Packet, Tap};
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome};
use netns_tests::probe::udp::{UdpListener, UdpStream};
use netns_tests::probe::SETTLE;
use netns_tests::report::Case;
use netns_tests::{cmd, nft, Netns, SendOpts, Topology};

/// The port Docker publishes on the client's addresses, forwarded to the container's
/// port 80 ([`TCP_PORT`], where [`Host`] listens).
const PUBLISHED_PORT: u16 = 8080;

/// What `dockerd` (default bridge, one container publishing 8080 -> 80) and `libvirtd`
/// (a "routed" network on virbr1, iptables backend) write into `ip filter` and `ip nat`, in
/// `iptables-save` form.
const DOCKER_AND_LIBVIRT_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWX - [0:0]
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
-A LIBVIRT_FWI -d 192.168.100.0/24 -o virbr1 -j ACCEPT
-A LIBVIRT_FWI -o virbr1 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWO -s 192.168.100.0/24 -i virbr1 -j ACCEPT
-A LIBVIRT_FWO -i virbr1 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWX -i virbr1 -o virbr1 -j ACCEPT
COMMIT
";

/// The standard topology plus, in the client (which forwards), a container behind
/// `docker0` (172.17.0.2, fd00:17::2) and a VM on a routed `virbr1` (192.168.100.2).
struct Lab {
    // Field order is drop order: the guests go first.
    ctr: Guest,
    vm: Guest,
    docker0: Bridge,
    t: Topology,
}

impl Lab {
    /// Builds it; with `rules`, Docker's and libvirt's iptables-nft rules are loaded.
    fn build(rules: bool) -> Lab {
        let t = Topology::builder().tunnel(true).build().expect("topology");
        let c = t.client();
        enable_forwarding(c).expect("forwarding");
        let docker0 = Bridge::create(
            c,
            "docker0",
            (DOCKER_BRIDGE_V4, 16),
            Some((DOCKER_BRIDGE_V6, 64)),
        )
        .expect("docker0");
        let ctr = docker0
            .attach(c, "ctr", "veth0a1b2c", CONTAINER_V4, Some(CONTAINER_V6))
            .expect("container");
        let virbr1 = Bridge::create(c, "virbr1", (VM_BRIDGE_V4, 24), None).expect("virbr1");
        let vm = virbr1.attach(c, "vm", "vnet0", VM_V4, None).expect("vm");
        // A routed network needs the LAN router to know it; the container's IPv6 prefix
        // is routed back too (Docker does not NAT IPv6), so the baseline can prove a leak.
        t.router()
            .ip_batch(&[
                "route add 192.168.100.0/24 via 192.168.1.2".to_string(),
                "route add fd00:17::/64 via fd00:1::2".to_string(),
            ])
            .expect("router routes");
        t.internet()
            .ip_batch(&[
                "route add 192.168.100.0/24 via 192.0.2.2".to_string(),
                "route add fd00:17::/64 via 2001:db8:ffff:1::2".to_string(),
            ])
            .expect("internet routes");
        if rules {
            iptables_restore(c, DOCKER_AND_LIBVIRT_RULES);
        }
        Lab {
            ctr,
            vm,
            docker0,
            t,
        }
    }

    fn client(&self) -> &Netns {
        self.t.client()
    }
}

/// Loads rules with the real `iptables-nft-restore` inside `ns` (never this machine's).
fn iptables_restore(ns: &Netns, rules: &str) {
    let cmd = ns.command("iptables-nft-restore").expect("command");
    let out = cmd::run(cmd, Some(rules.as_bytes()), cmd::DEFAULT_TIMEOUT).expect("run");
    assert!(
        out.success(),
        "iptables-nft-restore failed (is the Debian iptables package installed?): {}",
        out.stderr.trim()
    );
}

/// The full listing (counters included) of every table but ours.
fn foreign_tables(ns: &Netns) -> BTreeMap<String, String> {
    nft::tables(ns)
        .expect("tables")
        .into_iter()
        .filter(|tb| tb != "inet bitmask")
        .map(|tb| {
            let mut parts = tb.split_whitespace();
            let (f, n) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let text = ns.exec_ok("nft", &["list", "table", f, n]).expect("list");
            (tb.clone(), text)
        })
        .collect()
}

fn gw() -> Vec<IpAddr> {
    vec![v4(GATEWAY_V4)]
}

/// Packets on a tap that went into it toward one of `dsts` (from the client's side).
fn toward(tap: &Tap, dsts: &[IpAddr]) -> usize {
    tap.count_inbound(|p: &Packet| dsts.contains(&p.dst))
}

#[test]
fn case20_forwarded_traffic_blocked_outside_the_tunnel() {
    let mut case = Case::begin(
        20,
        "forwarded: containers and VMs only through the tunnel",
        "a container behind Docker's bridge (iptables-nft rules loaded) and a VM on a routed subnet without masquerade: tunnel down, nothing (tcp, udp, icmp, IPv6, raw protocol 253) reaches the internet or a gateway, and nothing crosses the LAN wire; tunnel up, their traffic arrives through the tunnel only",
    );
    let b = bin();
    let lab = Lab::build(true);
    let t = &lab.t;
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let host6 = Host::start(t.internet(), INTERNET_HOST_V6);
    let gateway = Host::start(t.internet(), GATEWAY_V4);
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let inet_tap = Tap::start(t.internet(), "r1").expect("tap");
    let vpn_tap = Tap::start(t.internet(), "vpn").expect("tap");
    let o = SendOpts::default();
    let ctr = lab.ctr.ns();
    let vm = lab.vm.ns();

    // What the issue measured: without the kill switch, the container reaches the
    // internet in clear (the tunnel is down).
    t.tunnel_down().expect("down");
    probe(ctr, &host, None, &o, true).check(&mut case, "baseline: container, no firewall", true);
    probe(vm, &host, None, &o, true).check(&mut case, "baseline: VM, no firewall", true);

    start(&b, lab.client(), &[], &gw());
    lan_tap.clear();
    inet_tap.clear();
    for (who, ns) in [("container", ctr), ("VM", vm)] {
        probe(ns, &host, None, &o, false).check(
            &mut case,
            &format!("tunnel down: {who} to 203.0.113.10"),
            false,
        );
        probe(ns, &gateway, None, &o, false).check(
            &mut case,
            &format!("tunnel down: {who} to the gateway 198.51.100.1"),
            false,
        );
        raw_send(ns, host.ip, EXPERIMENTAL_PROTO, b"raw", &o).expect("raw");
    }
    probe(ctr, &host6, None, &o, false).check(
        &mut case,
        "tunnel down: container to 2001:db8:1::10",
        false,
    );
    raw_send(ctr, host6.ip, EXPERIMENTAL_PROTO, b"raw6", &o).expect("raw");
    std::thread::sleep(SETTLE);
    let raw = |tap: &Tap| tap.count_inbound(|p| p.proto == EXPERIMENTAL_PROTO);
    case.expect_count(
        "tunnel down: protocol-253 packets reaching the internet",
        raw(&inet_tap),
        0,
    );
    let targets = [host.ip, host6.ip, gateway.ip];
    case.expect_count(
        "tunnel down: packets to the hosts and the gateway on the LAN wire",
        toward(&lan_tap, &targets) + raw(&lan_tap),
        0,
    );

    t.tunnel_up().expect("up");
    lan_tap.clear();
    vpn_tap.clear();
    let s = probe(ctr, &host, Some(v4(CLIENT_TUN_V4)), &o, true);
    s.check(&mut case, "tunnel up: container to 203.0.113.10", true);
    let from_tun = host
        .udp
        .datagrams()
        .iter()
        .all(|d| d.from.ip() == v4(CLIENT_TUN_V4));
    case.check(
        from_tun,
        "the container's datagrams arrived from the tunnel address (masqueraded onto tun0)",
    );
    host.udp.clear();
    host.echo.clear();
    netns_tests::probe::udp::udp_send(ctr, sa(host.ip, UDP_PORT), b"vm", &o).expect("send");
    netns_tests::probe::udp::udp_send(vm, sa(host.ip, UDP_PORT), b"vm", &o).expect("send");
    let arrived = host.udp.wait_for(2, WAIT);
    let from_vm = host
        .udp
        .datagrams()
        .iter()
        .filter(|d| d.from.ip() == v4(VM_V4))
        .count();
    case.seen(format!(
        "tunnel up: datagrams at 203.0.113.10: {arrived}, from the VM's own address: {from_vm}"
    ));
    case.check(
        from_vm == 1,
        "tunnel up: the VM's datagram arrives, unmasqueraded (routed subnet)",
    );
    raw_send(vm, host.ip, EXPERIMENTAL_PROTO, b"raw", &o).expect("raw");
    let through = vpn_tap.wait_for(1, WAIT, |p| {
        p.inbound && p.proto == EXPERIMENTAL_PROTO && p.dst == host.ip
    });
    case.expect_count(
        "tunnel up: the VM's protocol-253 packet through the tunnel",
        through,
        1,
    );
    probe(ctr, &gateway, None, &o, false).check(
        &mut case,
        "tunnel up: container to the gateway (routed outside the tunnel)",
        false,
    );
    probe(ctr, &host6, None, &o, false).check(
        &mut case,
        "tunnel up: container to 2001:db8:1::10 (the tunnel carries no IPv6)",
        false,
    );
    std::thread::sleep(SETTLE);
    case.expect_count(
        "tunnel up: packets to the hosts and the gateway on the LAN wire",
        toward(&lan_tap, &targets) + raw(&lan_tap),
        0,
    );
    case.pass();
}

#[test]
fn case21_forwarded_dns() {
    let mut case = Case::begin(
        21,
        "forwarded DNS through the tunnel only",
        "container and VM DNS (udp, tcp) to a public resolver and to the LAN router: answered by 10.42.0.1 through the tunnel; to the bridge's own address (the host's resolver, libvirt's dnsmasq): answered locally; tunnel down: no answer and no port-53 packet on the LAN wire; IPv6 DNS blocked",
    );
    let b = bin();
    let lab = Lab::build(true);
    let t = &lab.t;
    let vpn = t.vpn().expect("vpn");
    let r42 = DnsResponder::start(vpn, v4(VPN_RESOLVER)).expect("dns");
    let other = DnsResponder::start(t.internet(), v4(OTHER_RESOLVER_V4)).expect("dns");
    let other6 = DnsResponder::start(t.internet(), IpAddr::V6(INTERNET_HOST_V6)).expect("dns");
    let router = DnsResponder::start(t.router(), v4(ROUTER_LAN_V4)).expect("dns");
    let on_docker0 = DnsResponder::start(lab.client(), v4(DOCKER_BRIDGE_V4)).expect("dns");
    let on_virbr1 = DnsResponder::start(lab.client(), v4(VM_BRIDGE_V4)).expect("dns");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let o = SendOpts::default();
    let ask = |ns: &Netns, server: IpAddr, tr: Transport| {
        dns_query(ns, sa(server, 53), tr, &o).expect("query")
    };
    start(&b, lab.client(), &[], &gw());

    let guests = [
        ("container", lab.ctr.ns(), v4(DOCKER_BRIDGE_V4)),
        ("VM", lab.vm.ns(), v4(VM_BRIDGE_V4)),
    ];
    for (who, ns, bridge) in guests {
        for tr in [Transport::Udp, Transport::Tcp] {
            for server in [v4(OTHER_RESOLVER_V4), v4(ROUTER_LAN_V4)] {
                let a = ask(ns, server, tr);
                case.seen(format!("{who} {tr:?} DNS to {server}: {a:?}"));
                case.check(
                    a.answered_by() == Some(v4(VPN_RESOLVER)),
                    format!("{who} {tr:?} DNS to {server}: answered by 10.42.0.1, got {a:?}"),
                );
            }
            let a = ask(ns, bridge, tr);
            case.seen(format!("{who} {tr:?} DNS to its bridge {bridge}: {a:?}"));
            case.check(
                a.answered_by() == Some(bridge),
                format!("{who} {tr:?} DNS to the host's resolver {bridge} stays local, got {a:?}"),
            );
        }
    }
    let a = ask(lab.ctr.ns(), IpAddr::V6(INTERNET_HOST_V6), Transport::Udp);
    case.seen(format!("container udp DNS to 2001:db8:1::10: {a:?}"));
    case.check(a.answered_by().is_none(), "IPv6 DNS is not answered");
    let masqueraded = r42
        .queries()
        .iter()
        .all(|q| q.from.ip() == v4(CLIENT_TUN_V4));
    case.expect_count("queries at 10.42.0.1", r42.count(), 8);
    case.check(
        masqueraded,
        "every query reached 10.42.0.1 from the tunnel address (the routed VM's too)",
    );
    case.expect_count(
        "queries at 198.51.100.53, the LAN router and 2001:db8:1::10",
        other.count() + router.count() + other6.count(),
        0,
    );
    case.expect_count(
        "queries at the bridges' own resolvers",
        on_docker0.count() + on_virbr1.count(),
        4,
    );

    t.tunnel_down().expect("down");
    lan_tap.clear();
    let before = r42.count();
    for (who, ns, bridge) in guests {
        for tr in [Transport::Udp, Transport::Tcp] {
            for server in [v4(OTHER_RESOLVER_V4), v4(ROUTER_LAN_V4), v4(VPN_RESOLVER)] {
                let a = ask(ns, server, tr);
                case.seen(format!("tunnel down: {who} {tr:?} DNS to {server}: {a:?}"));
                case.check(
                    a.answered_by().is_none(),
                    format!("tunnel down: {who} {tr:?} DNS to {server} is not answered, got {a:?}"),
                );
            }
            let a = ask(ns, bridge, tr);
            case.check(
                a.answered_by() == Some(bridge),
                format!("tunnel down: {who} {tr:?} DNS to {bridge} still answered, got {a:?}"),
            );
        }
    }
    std::thread::sleep(SETTLE);
    case.expect_count(
        "tunnel down: port-53 packets on the LAN wire",
        lan_tap.count_inbound(|p| p.dport == Some(53)),
        0,
    );
    case.expect_count(
        "tunnel down: queries reaching any resolver off the host",
        r42.count() - before + other.count() + router.count() + other6.count(),
        0,
    );
    case.pass();
}

#[test]
fn case22_forwarded_lan_port_forward_and_bridges() {
    let mut case = Case::begin(
        22,
        "forwarded: LAN, a published port, two bridges, --lan off",
        "container to the LAN router, to a container on the same bridge and to a VM on a second bridge, VM to the container and to the LAN, the LAN router to a port Docker publishes into the container: all work (--lan private); with --lan off all are blocked (same bridge: when br_netfilter hands bridged packets to the IP hooks) while the container's tcp through the tunnel still connects",
    );
    let b = bin();
    let lab = Lab::build(true);
    let t = &lab.t;
    let o = SendOpts::default();
    let ctr = lab.ctr.ns();
    let vm = lab.vm.ns();
    let lan = Host::start(t.router(), ROUTER_LAN_V4);
    let vm_host = Host::start(vm, VM_V4);
    let ctr_host = Host::start(ctr, CONTAINER_V4);
    let service = &ctr_host.tcp;
    let internet = Host::start(t.internet(), INTERNET_HOST_V4);
    let published = sa(CLIENT_LAN_V4, PUBLISHED_PORT);
    // A second container on the same bridge: with br_netfilter (Docker loads it) bridged
    // traffic passes the forward hook too.
    let bridged = lab
        .client()
        .exec_ok("sysctl", &["-n", "net.bridge.bridge-nf-call-iptables"])
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    case.seen(format!(
        "bridged IPv4 passes the IP hooks (br_netfilter): {bridged}"
    ));
    let ctr2 = lab
        .docker0
        .attach(
            lab.client(),
            "ctr2",
            "veth3c4d5e",
            Ipv4Addr::new(172, 17, 0, 3),
            None,
        )
        .expect("second container");
    let ctr2_host = Host::start(ctr2.ns(), Ipv4Addr::new(172, 17, 0, 3));

    for (flags, open) in [(&[][..], true), (&["--lan", "off"][..], false)] {
        start(&b, lab.client(), flags, &gw());
        let mode = if open { "--lan private" } else { "--lan off" };
        for (label, from, to) in [
            ("container to the LAN router", ctr, &lan),
            ("container to the VM (second bridge)", ctr, &vm_host),
            ("VM to the container", vm, &ctr_host),
            ("VM to the LAN router", vm, &lan),
        ] {
            probe(from, to, None, &o, open).check(&mut case, &format!("{mode}: {label}"), open);
        }
        // Between two ports of one bridge: routed by no one, so only br_netfilter brings
        // it to the forward hook, where --lan decides.
        let same_bridge = open || !bridged;
        probe(ctr, &ctr2_host, None, &o, same_bridge).check(
            &mut case,
            &format!("{mode}: container to a container on the same bridge"),
            same_bridge,
        );
        service.clear();
        let out = tcp_connect(t.router(), published, b"port-forward", &o).expect("connect");
        let n = if open {
            service.wait_for(1, WAIT)
        } else {
            std::thread::sleep(SETTLE);
            service.count()
        };
        case.seen(format!(
            "{mode}: LAN router to {published} (published into the container): {out:?}, accepted by the container: {n}"
        ));
        case.check(
            (n == 1) == open,
            format!("{mode}: the published port is reachable from the LAN: {open}"),
        );
        internet.tcp.clear();
        let out = tcp_connect(ctr, sa(internet.ip, TCP_PORT), b"tunnel", &o).expect("connect");
        case.seen(format!(
            "{mode}: container tcp to 203.0.113.10 via the tunnel: {out:?}"
        ));
        case.check(
            out == ConnectOutcome::Connected && internet.tcp.wait_for(1, WAIT) == 1,
            format!("{mode}: the container's tcp through the tunnel connects (its replies come back), got {out:?}"),
        );
    }
    case.pass();
}

#[test]
fn case23_forwarded_flood_during_start_replace_stop() {
    let mut case = Case::begin(
        23,
        "forwarded flood during start, replacements and stop",
        "a container sends 1 udp packet/ms to an internet host throughout: the flow that leaked before start stops at start (no conntrack entry keeps it open); 60 replacing starts with the tunnel up and 60 with it down: zero packets outside the tunnel (LAN wire, internet host); after stop the flood arrives again",
    );
    let b = bin();
    let lab = Lab::build(true);
    let t = &lab.t;
    let host = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, UDP_PORT)).expect("udp");
    let lan_tap = Tap::start(t.router(), "lan0").expect("tap");
    let vpn_tap = Tap::start(t.internet(), "vpn").expect("tap");
    let to_host = |p: &Packet| p.dst == v4(INTERNET_HOST_V4);
    t.tunnel_down().expect("down");
    let stream = UdpStream::start(
        lab.ctr.ns(),
        sa(INTERNET_HOST_V4, UDP_PORT),
        b"flood",
        Duration::from_millis(1),
        120_000,
        &SendOpts::default(),
    )
    .expect("stream");
    let leaked = host.wait_for(20, WAIT);
    case.expect_at_least(
        "before start: flood datagrams arriving in clear",
        leaked,
        20,
    );

    start(&b, lab.client(), &[], &gw());
    // What was already past the forward hook when the transaction committed may still land.
    std::thread::sleep(SETTLE);
    host.clear();
    lan_tap.clear();
    let lists: [Vec<IpAddr>; 2] = [gw(), vec![v4(GATEWAY_V4), v4(gateway_v4(2))]];
    let mut failures = Vec::new();
    let replace = |n: usize, failures: &mut Vec<String>| {
        for i in 0..n {
            let flags: &[&str] = if i % 3 == 2 { &["--lan", "off"] } else { &[] };
            if let Err(e) = b.start(lab.client(), flags, &lists[i % 2]) {
                failures.push(e.to_string());
            }
        }
    };
    replace(60, &mut failures);
    std::thread::sleep(SETTLE);
    case.expect_count(
        "tunnel down: flood datagrams at the internet host",
        host.count(),
        0,
    );
    case.expect_count(
        "tunnel down: flood packets on the LAN wire",
        lan_tap.count_inbound(to_host),
        0,
    );

    t.tunnel_up().expect("up");
    vpn_tap.clear();
    replace(60, &mut failures);
    std::thread::sleep(SETTLE);
    let through = vpn_tap.count_inbound(to_host);
    case.expect_at_least("tunnel up: flood packets through the tunnel", through, 20);
    case.expect_count(
        "tunnel up: flood packets on the LAN wire",
        lan_tap.count_inbound(to_host),
        0,
    );
    case.check(
        failures.is_empty(),
        format!("every start exits 0: {failures:?}"),
    );

    t.tunnel_down().expect("down");
    host.clear();
    let out = b.stop(lab.client()).expect("stop");
    case.check(out.success(), "stop exits 0");
    let after = host.wait_for(20, WAIT);
    let sent = stream.stop().expect("stream");
    case.seen(format!(
        "sender: {} datagrams accepted by the kernel, {} refused",
        sent.sent, sent.failed
    ));
    case.expect_at_least(
        "after stop: flood datagrams arriving in clear again (the flood was live; no rule is left)",
        after,
        20,
    );
    case.pass();
}

#[test]
fn case24_forwarding_coexistence_isup_and_opt_outs() {
    let mut case = Case::begin(
        24,
        "forwarding: Docker's tables, isup, --forward off, --compat",
        "Docker's and libvirt's iptables-nft tables byte-identical after start, a replacing start and stop; isup says tampered when the forward or nat_prerouting chain is changed, stale when a new bridge appears, and stays up when a container starts on an existing bridge; ip_forward left as it was; --forward off and --compat leave forwarded traffic unfiltered (documented leaks)",
    );
    let b = bin();
    let lab = Lab::build(true);
    let t = &lab.t;
    let c = lab.client();
    let host = Host::start(t.internet(), INTERNET_HOST_V4);
    let o = SendOpts::default();
    t.tunnel_down().expect("down");

    let before = foreign_tables(c);
    case.seen(format!(
        "foreign tables: {:?}",
        before.keys().collect::<Vec<_>>()
    ));
    case.check(
        before.contains_key("ip filter") && before.contains_key("ip nat"),
        "Docker's ip filter and ip nat tables exist",
    );
    start(&b, c, &[], &gw());
    case.check(
        foreign_tables(c) == before,
        "Docker's tables identical after start",
    );
    start(
        &b,
        c,
        &["--lan", "off"],
        &[v4(GATEWAY_V4), v4(gateway_v4(2))],
    );
    case.check(
        foreign_tables(c) == before,
        "Docker's tables identical after a replacing start",
    );
    b.stop(c).expect("stop");
    case.check(
        foreign_tables(c) == before,
        "Docker's tables identical after stop",
    );

    let isup = |case: &mut Case, label: &str, want_up: bool| {
        let out = b.run(c, &["firewall", "isup"]).expect("isup");
        let said = format!("{}{}", out.stdout.trim(), out.stderr.trim());
        case.seen(format!("{label}: isup exit {:?}: {said}", out.code));
        case.check(
            (out.code == Some(0)) == want_up,
            format!("{label}: isup exit {:?}", out.code),
        );
        said
    };
    start(&b, c, &[], &gw());
    isup(&mut case, "started", true);
    nft::nft(c, &["flush", "chain", "inet", "bitmask", "forward"]).expect("flush");
    let said = isup(&mut case, "forward chain flushed", false);
    case.check(
        said.contains("changed by another program"),
        "it says tampered",
    );
    start(&b, c, &[], &gw());
    isup(&mut case, "restarted", true);
    let handle = c
        .exec_ok(
            "nft",
            &["-a", "list", "chain", "inet", "bitmask", "nat_prerouting"],
        )
        .expect("list")
        .lines()
        .find(|l| l.contains("fib daddr type local"))
        .and_then(|l| l.rsplit("handle ").next())
        .map(|h| h.trim().to_string())
        .expect("the fib rule's handle");
    nft::nft(
        c,
        &[
            "delete",
            "rule",
            "inet",
            "bitmask",
            "nat_prerouting",
            "handle",
            &handle,
        ],
    )
    .expect("delete");
    let said = isup(&mut case, "fib rule deleted from nat_prerouting", false);
    case.check(
        said.contains("changed by another program"),
        "it says tampered",
    );
    start(&b, c, &[], &gw());
    isup(&mut case, "restarted", true);
    let bridge =
        Bridge::create(c, "br-5f3a", (Ipv4Addr::new(172, 18, 0, 1), 16), None).expect("new bridge");
    let said = isup(
        &mut case,
        "a new Docker network (br-5f3a, 172.18.0.0/16)",
        false,
    );
    case.check(
        said.contains("stale")
            && said.contains(r#"oifname "br-5f3a" ip daddr 172.18.0.0/16 accept"#),
        "it says stale and names the rule the new bridge needs",
    );
    start(&b, c, &[], &gw());
    isup(&mut case, "restarted", true);
    // A container starting on an existing bridge (its veth gets an IPv6 link-local address
    // of its own) changes nothing the firewall depends on.
    let _ctr2 = bridge
        .attach(c, "ctr2", "veth9f8e7d", Ipv4Addr::new(172, 18, 0, 2), None)
        .expect("second container");
    isup(&mut case, "a container started on br-5f3a", true);
    let dry = b
        .run(
            c,
            &["--dry-run", "firewall", "start", &GATEWAY_V4.to_string()],
        )
        .expect("dry run");
    let listing = nft::table(c, "inet", "bitmask")
        .expect("nft")
        .expect("table");
    case.check(
        dry.stdout == nft::fresh_counters(&listing)
            && listing.contains("chain forward")
            && listing.contains("chain nat_prerouting"),
        "--dry-run prints the forwarding chains exactly as nft lists them",
    );

    // The default profile never changes forwarding, whichever way it is set.
    let forwarding = || {
        ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"].map(|k| {
            c.exec_ok("sysctl", &["-n", k])
                .expect("sysctl")
                .trim()
                .to_string()
        })
    };
    c.sysctl(&[
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv6.conf.all.forwarding", "0"),
    ])
    .expect("sysctl");
    start(&b, c, &[], &gw());
    let off = forwarding();
    enable_forwarding(c).expect("forwarding");
    start(&b, c, &[], &gw());
    let on = forwarding();
    case.seen(format!(
        "forwarding after start: set off {off:?}, set on {on:?}"
    ));
    case.check(
        off == ["0", "0"] && on == ["1", "1"],
        "the default profile leaves ip_forward and IPv6 forwarding as they were",
    );

    for flags in [&["--forward", "off"][..], &["--compat"][..]] {
        start(&b, c, flags, &gw());
        let listing = nft::table(c, "inet", "bitmask")
            .expect("nft")
            .expect("table");
        case.check(
            !listing.contains("hook forward") && !listing.contains("hook prerouting"),
            format!("{flags:?}: no forwarding chains"),
        );
        isup(&mut case, &format!("{flags:?} started"), true);
        probe(lab.ctr.ns(), &host, None, &o, true).check(
            &mut case,
            &format!("{flags:?}, tunnel down: the container LEAKS (documented)"),
            true,
        );
    }
    b.stop(c).expect("stop");
    case.check(
        foreign_tables(c).keys().eq(before.keys()),
        "the same foreign tables at the end",
    );
    case.pass();
}
