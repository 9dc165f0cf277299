//! `cargo xtask demo`: the kill switch at work in a throwaway topology of network namespaces.
//!
//! Nothing here touches this machine's own network: every namespace is created by the
//! harness, linked only to the others, checked against the initial namespace before use, and
//! removed when the topology is dropped (also on error or panic).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netns_tests::addr::*;
use netns_tests::container::{enable_forwarding, Bridge, Guest};
use netns_tests::probe::dns::{dns_query, DnsOutcome, DnsResponder, Transport};
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::{nft, BitmaskRoot, Netns, SendOpts, Topology};

/// What Docker's default bridge adds for its containers: masquerade out of any other
/// interface (loaded with nft in the client namespace only).
const CONTAINER_NAT: &str = "\
table ip demo_docker_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade
	}
}
";

/// A container behind a `docker0` bridge in the client, which forwards and masquerades for
/// it as Docker does.
fn container(t: &Topology) -> Result<Guest, String> {
    let c = t.client();
    enable_forwarding(c).map_err(e)?;
    let bridge = Bridge::create(c, "docker0", (DOCKER_BRIDGE_V4, 16), None).map_err(e)?;
    let guest = bridge
        .attach(c, "ctr", "veth0a1b2c", CONTAINER_V4, None)
        .map_err(e)?;
    nft::apply(c, CONTAINER_NAT).map_err(e)?;
    Ok(guest)
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn e(err: netns_tests::Error) -> String {
    err.to_string()
}

/// One probe: what it does, what the kill switch should do, what happened.
struct Row {
    probe: String,
    expect_pass: bool,
    passed: bool,
    detail: String,
    /// With the kill switch, the probe must also have been answered by this resolver.
    answered_by: Option<IpAddr>,
}

fn tcp(ns: &Netns, to: SocketAddr, opts: &SendOpts) -> Result<(bool, String), String> {
    let out = tcp_connect(ns, to, b"demo", opts).map_err(e)?;
    Ok((out == ConnectOutcome::Connected, format!("{out:?}")))
}

fn dns(
    t: &Topology,
    server: SocketAddr,
    tr: Transport,
    opts: &SendOpts,
) -> Result<(bool, String), String> {
    let out = dns_query(t.client(), server, tr, opts).map_err(e)?;
    Ok(match out {
        DnsOutcome::Answered { by } => (true, format!("answered by {by}")),
        other => (false, format!("{other:?}")),
    })
}

fn probes(t: &Topology, ctr: &Guest) -> Result<Vec<Row>, String> {
    let c = t.client();
    let opts = SendOpts {
        // Long enough for one TCP SYN retransmission (1 s): right after the simulated tunnel
        // comes back up, its first packet is now and then lost in the test topology.
        timeout: Some(Duration::from_millis(2500)),
        ..SendOpts::default()
    };
    let bound = SendOpts {
        bind_device: Some("eth0".into()),
        ..opts.clone()
    };
    let mut rows = Vec::new();
    let mut row =
        |probe: &str, expect_pass: bool, answered_by: Option<IpAddr>, r: (bool, String)| {
            rows.push(Row {
                probe: probe.into(),
                expect_pass,
                passed: r.0,
                detail: r.1,
                answered_by,
            });
        };
    let vpn_dns = Some(IpAddr::V4(VPN_RESOLVER));
    row(
        "tcp to the VPN gateway 198.51.100.1:443",
        true,
        None,
        tcp(c, sa(GATEWAY_V4, 443), &opts)?,
    );
    row(
        "tcp to the LAN router 192.168.1.1:8080",
        true,
        None,
        tcp(c, sa(ROUTER_LAN_V4, 8080), &opts)?,
    );
    row(
        "tcp to 203.0.113.10:443 (through the tunnel)",
        true,
        None,
        tcp(c, sa(INTERNET_HOST_V4, 443), &opts)?,
    );
    row(
        "tcp to 203.0.113.10:443 bound to eth0 (SO_BINDTODEVICE)",
        false,
        None,
        tcp(c, sa(INTERNET_HOST_V4, 443), &bound)?,
    );
    row(
        "tcp to [2001:db8:1::10]:443 over IPv6",
        false,
        None,
        tcp(c, sa(INTERNET_HOST_V6, 443), &opts)?,
    );
    row(
        "DNS/udp to 198.51.100.53 (rewritten to the VPN resolver)",
        true,
        vpn_dns,
        dns(t, sa(OTHER_RESOLVER_V4, 53), Transport::Udp, &opts)?,
    );
    // The resolver DHCP hands out, as systemd-resolved and NetworkManager forward to it.
    row(
        "DNS/udp to the LAN router 192.168.1.1 (rewritten, through the tunnel)",
        true,
        vpn_dns,
        dns(t, sa(ROUTER_LAN_V4, 53), Transport::Udp, &opts)?,
    );
    row(
        "DNS/tcp to the LAN router 192.168.1.1 (rewritten, through the tunnel)",
        true,
        vpn_dns,
        dns(t, sa(ROUTER_LAN_V4, 53), Transport::Tcp, &opts)?,
    );
    row(
        "container: tcp to 203.0.113.10:443 (through the tunnel)",
        true,
        None,
        tcp(ctr.ns(), sa(INTERNET_HOST_V4, 443), &opts)?,
    );
    t.tunnel_down().map_err(e)?;
    row(
        "container: tcp to 203.0.113.10:443 with the tunnel down",
        false,
        None,
        tcp(ctr.ns(), sa(INTERNET_HOST_V4, 443), &opts)?,
    );
    row(
        "DNS/udp to 198.51.100.53 with the tunnel down",
        false,
        None,
        dns(t, sa(OTHER_RESOLVER_V4, 53), Transport::Udp, &opts)?,
    );
    row(
        "DNS/udp to the LAN router 192.168.1.1 with the tunnel down",
        false,
        None,
        dns(t, sa(ROUTER_LAN_V4, 53), Transport::Udp, &opts)?,
    );
    row(
        "tcp to 203.0.113.10:443 with the tunnel down",
        false,
        None,
        tcp(c, sa(INTERNET_HOST_V4, 443), &opts)?,
    );
    t.tunnel_up().map_err(e)?;
    Ok(rows)
}

fn print_rows(title: &str, rows: &[Row], firewall: bool) -> bool {
    println!("\n{title}");
    let mut ok = true;
    for r in rows {
        let verdict = if r.passed { "let through" } else { "blocked" };
        let mark = if !firewall {
            " "
        } else if r.passed == r.expect_pass
            && r.answered_by
                .is_none_or(|by| r.detail == format!("answered by {by}"))
        {
            "✓"
        } else {
            ok = false;
            "✗"
        };
        println!("  {mark} {:<70} {:<12} ({})", r.probe, verdict, r.detail);
    }
    ok
}

/// Runs the demo.
pub fn run(bin: &std::path::Path) -> Result<(), String> {
    let b = BitmaskRoot::at(bin).map_err(e)?;
    println!(
        "Building a throwaway topology (client, LAN router, internet, VPN side behind tun0, a container behind docker0 in the client)..."
    );
    let t = Topology::builder().tunnel(true).build().map_err(e)?;
    let ctr = container(&t)?;
    println!(
        "namespaces: {}, {}",
        t.namespace_names().join(", "),
        ctr.ns().name()
    );
    let _listeners = [
        TcpListener::start(t.internet(), sa(GATEWAY_V4, 443)).map_err(e)?,
        TcpListener::start(t.internet(), sa(INTERNET_HOST_V4, 443)).map_err(e)?,
        TcpListener::start(t.internet(), sa(INTERNET_HOST_V6, 443)).map_err(e)?,
        TcpListener::start(t.router(), sa(ROUTER_LAN_V4, 8080)).map_err(e)?,
    ];
    let vpn = t.vpn().map_err(e)?;
    // Every resolver answers with its own address, so each row shows who answered.
    let _dns = [
        DnsResponder::start(vpn, IpAddr::V4(VPN_RESOLVER)).map_err(e)?,
        DnsResponder::start(t.internet(), IpAddr::V4(OTHER_RESOLVER_V4)).map_err(e)?,
        DnsResponder::start(t.router(), IpAddr::V4(ROUTER_LAN_V4)).map_err(e)?,
    ];
    print_rows("Without the kill switch:", &probes(&t, &ctr)?, false);

    println!(
        "\n$ bitmask-root firewall start {GATEWAY_V4}   (in {})",
        t.client().name()
    );
    let out = b
        .start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .map_err(e)?;
    print!("{}", out.stdout);
    let ruleset = nft::table(t.client(), "inet", "bitmask")
        .map_err(e)?
        .unwrap_or_default();
    println!("\n$ nft list table inet bitmask\n{ruleset}");
    let ok = print_rows("With the kill switch:", &probes(&t, &ctr)?, true);
    let isup = b.run(t.client(), &["firewall", "isup"]).map_err(e)?;
    print!(
        "\n$ bitmask-root firewall isup\n{}{}",
        isup.stdout, isup.stderr
    );
    // With the tunnel down the firewall is still up, and says why DNS fails meanwhile.
    t.tunnel_down().map_err(e)?;
    let isup = b.run(t.client(), &["firewall", "isup"]).map_err(e)?;
    print!(
        "$ bitmask-root firewall isup   (tunnel down)\n{}{}",
        isup.stdout, isup.stderr
    );
    t.tunnel_up().map_err(e)?;
    let stop = b.stop(t.client()).map_err(e)?;
    print!("$ bitmask-root firewall stop\n{}", stop.stdout);
    drop(ctr);
    drop(t);
    println!("\nThe namespaces are gone; this machine's own network was never touched.");
    if ok {
        Ok(())
    } else {
        Err("a probe did not behave as the kill switch promises (marked ✗ above)".into())
    }
}
