//! The firewall engine against the real kernel, in throwaway namespaces: what issue 2 asks
//! of the engine itself (the full leak matrix is in `leak_matrix.rs`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netns_tests::addr::*;
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::{nft, BitmaskRoot, SendOpts, Topology};

fn bin() -> BitmaskRoot {
    BitmaskRoot::from_env().expect("the bitmask-root binary (cargo xtask test builds it)")
}

fn connect(t: &Topology, to: SocketAddr) -> ConnectOutcome {
    let opts = SendOpts {
        timeout: Some(Duration::from_millis(700)),
        ..SendOpts::default()
    };
    tcp_connect(t.client(), to, b"probe", &opts).expect("tcp probe")
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[test]
fn the_kernel_lists_exactly_the_plan() {
    let t = Topology::builder().build().expect("topology");
    let b = bin();
    for flags in [
        &[][..],
        &["--lan", "off", "--debug"][..],
        &["--compat", "--tcp"][..],
        &["--lan", "on-link", "--tunnel", "wg0"][..],
        &["--forward", "off"][..],
    ] {
        let gws = [IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)];
        b.start(t.client(), flags, &gws).expect("start");
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(["--dry-run", "firewall", "start"].map(String::from));
        args.extend(gws.iter().map(|g| g.to_string()));
        let plan = b.run(t.client(), &args).expect("dry run");
        assert!(plan.success(), "dry run failed: {}", plan.stderr);
        let kernel = nft::table(t.client(), "inet", "bitmask")
            .expect("nft")
            .expect("our table");
        assert_eq!(
            nft::fresh_counters(&kernel),
            plan.stdout,
            "flags {flags:?}: the kernel's listing differs from the plan"
        );
    }
}

/// Long gateway lists too: nft lays set elements out over several lines.
#[test]
fn the_kernel_lists_exactly_the_plan_with_many_gateways() {
    let t = Topology::builder().build().expect("topology");
    let b = bin();
    let gws: Vec<IpAddr> = (1u32..=300)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0xc633_6400 + i * 3)))
        .chain(
            (1u128..=40)
                .map(|i| IpAddr::V6(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + i * 7))),
        )
        .collect();
    b.start(t.client(), &[], &gws).expect("start");
    let mut args: Vec<String> = ["--dry-run", "firewall", "start"]
        .map(String::from)
        .to_vec();
    args.extend(gws.iter().map(|g| g.to_string()));
    let plan = b.run(t.client(), &args).expect("dry run");
    let kernel = nft::table(t.client(), "inet", "bitmask")
        .expect("nft")
        .expect("our table");
    assert_eq!(nft::fresh_counters(&kernel), plan.stdout);
}

#[test]
fn gateways_and_lan_pass_everything_else_is_refused_and_replacement_flips_it() {
    let gw2 = gateway_v4(2);
    let t = Topology::builder()
        .gateways(&[IpAddr::V4(GATEWAY_V4), IpAddr::V4(gw2)])
        .build()
        .expect("topology");
    let _l1 = TcpListener::start(t.internet(), sa(GATEWAY_V4, 443)).expect("listen");
    let _l2 = TcpListener::start(t.internet(), sa(gw2, 443)).expect("listen");
    let _l3 = TcpListener::start(t.internet(), sa(INTERNET_HOST_V4, 443)).expect("listen");
    let _lan = TcpListener::start(t.router(), sa(ROUTER_LAN_V4, 8080)).expect("listen");
    assert_eq!(
        connect(&t, sa(INTERNET_HOST_V4, 443)),
        ConnectOutcome::Connected,
        "no firewall yet"
    );

    let b = bin();
    b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("start");
    assert_eq!(
        connect(&t, sa(INTERNET_HOST_V4, 443)),
        ConnectOutcome::Refused
    );
    assert_eq!(connect(&t, sa(GATEWAY_V4, 443)), ConnectOutcome::Connected);
    assert_eq!(connect(&t, sa(gw2, 443)), ConnectOutcome::Refused);
    assert_eq!(
        connect(&t, sa(ROUTER_LAN_V4, 8080)),
        ConnectOutcome::Connected,
        "LAN"
    );

    // Replacing the running firewall with another gateway list flips reachability.
    b.start(t.client(), &[], &[IpAddr::V4(gw2)])
        .expect("replace");
    assert_eq!(connect(&t, sa(GATEWAY_V4, 443)), ConnectOutcome::Refused);
    assert_eq!(connect(&t, sa(gw2, 443)), ConnectOutcome::Connected);
    assert_eq!(
        connect(&t, sa(INTERNET_HOST_V4, 443)),
        ConnectOutcome::Refused
    );

    let out = b.stop(t.client()).expect("stop");
    assert!(out.success());
    assert_eq!(
        connect(&t, sa(INTERNET_HOST_V4, 443)),
        ConnectOutcome::Connected,
        "after stop"
    );
}

#[test]
fn stop_leaves_no_trace_and_spares_foreign_tables() {
    let t = Topology::builder().build().expect("topology");
    nft::apply(
        t.client(),
        "table inet mine {\n chain out {\n type filter hook output priority 10; policy accept;\n \
         tcp dport 9999 counter accept\n }\n}\ntable ip filter {\n chain OUTPUT {\n type filter \
         hook output priority 0; policy accept;\n }\n}\n",
    )
    .expect("foreign tables");
    let before = nft::ruleset_stateless(t.client()).expect("ruleset");
    let b = bin();
    b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("start");
    let during = nft::ruleset_stateless(t.client()).expect("ruleset");
    assert!(during.contains("table inet bitmask"));
    assert!(during.contains("table inet mine") && during.contains("table ip filter"));
    let out = b.stop(t.client()).expect("stop");
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(nft::ruleset_stateless(t.client()).expect("ruleset"), before);
    let again = b.stop(t.client()).expect("stop again");
    assert!(
        again.success(),
        "stop on a stopped firewall exits 0: {}",
        again.stderr
    );
    assert!(again.stdout.contains("was not running"));
}

#[test]
fn invalid_commands_change_nothing_and_exit_2() {
    let t = Topology::builder().build().expect("topology");
    let b = bin();
    for up in [false, true] {
        if up {
            b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
                .expect("start");
        }
        let before = nft::ruleset(t.client()).expect("ruleset");
        for args in [
            &["firewall", "start"][..],
            &["firewall", "start", "127.1"][..],
            &["firewall", "start", "198.51.100.7", "1.2.3.4 junk"][..],
            &["firewall", "start", "198.51.100.7; nft flush ruleset"][..],
            &["--lan", "maybe", "firewall", "start", "198.51.100.7"][..],
            &["firewall", "start", "198.51.100.7", "--udp"][..],
            &["firewall", "frobnicate"][..],
        ] {
            let out = b.run(t.client(), args).expect("run");
            assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.starts_with("bitmask-root: "),
                "{args:?}: {}",
                out.stderr
            );
            assert_eq!(
                out.stderr.trim_end().lines().count(),
                1,
                "one line: {}",
                out.stderr
            );
        }
        assert_eq!(
            nft::ruleset(t.client()).expect("ruleset"),
            before,
            "up={up}"
        );
    }
}

#[test]
fn isup_reports_up_down_and_tampered() {
    let t = Topology::builder().build().expect("topology");
    let b = bin();
    assert_eq!(b.isup(t.client(), &[]).expect("isup"), Some(1), "down");
    b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("start");
    assert_eq!(b.isup(t.client(), &[]).expect("isup"), Some(0), "up");
    nft::nft(t.client(), &["flush", "chain", "inet", "bitmask", "output"]).expect("flush");
    let out = b.run(t.client(), &["firewall", "isup"]).expect("isup");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("changed by another program"),
        "{}",
        out.stderr
    );
    b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("restore");
    // The set is declared at its size, so an extra element does not fit; swapping one does.
    nft::apply(
        t.client(),
        "delete element inet bitmask gateways4 { 198.51.100.1 }\n\
         add element inet bitmask gateways4 { 203.0.113.10 }\n",
    )
    .expect("swap a gateway");
    let out = b.run(t.client(), &["firewall", "isup"]).expect("isup");
    assert_eq!(
        out.code,
        Some(1),
        "another gateway was swapped into the set: {}",
        out.stdout
    );
    b.stop(t.client()).expect("stop");
    assert_eq!(
        b.isup(t.client(), &[]).expect("isup"),
        Some(1),
        "down again"
    );
}

/// The library API, called on threads inside the client namespace (what an embedding VPN
/// client does): start, status, a refused batch that leaves the ruleset byte for byte as it
/// was, an exclusive create that the kernel refuses over a running table, stop.
#[test]
fn library_start_status_refusal_and_stop() {
    use bitmask_root::{engine, firewall, plan, policy::Policy, transport};
    fn rt() -> Result<tokio::runtime::Runtime, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())
    }
    fn policy() -> Result<Policy, String> {
        Policy::builder()
            .gateway(IpAddr::V4(GATEWAY_V4))
            .build()
            .map_err(|e| e.to_string())
    }
    fn plan_here() -> Result<plan::Ruleset, String> {
        let net = rt()?
            .block_on(bitmask_root::discovery::discover())
            .map_err(|e| e.to_string())?;
        firewall::plan(&policy()?, &net).map_err(|e| e.to_string())
    }
    let t = Topology::builder().build().expect("topology");
    let before = nft::ruleset(t.client()).expect("ruleset");
    t.client()
        .run(|| -> Result<(), String> {
            let rt = rt()?;
            rt.block_on(firewall::start(&policy()?))
                .map_err(|e| e.to_string())?;
            match rt.block_on(firewall::status()).map_err(|e| e.to_string())? {
                firewall::Status::Up(p) if p == policy()? => Ok(()),
                other => Err(format!("status after start: {other}")),
            }
        })
        .expect("thread in namespace")
        .expect("start and status");
    let running = nft::ruleset(t.client()).expect("ruleset");

    // A ruleset the kernel refuses (syslog level 99): nothing of it may be applied.
    t.client()
        .run(|| -> Result<(), String> {
            let mut bad = plan_here()?;
            let log = plan::Action::Log {
                prefix: "x".into(),
                level: 99,
            };
            bad.chains[0].rules.insert(3, plan::Rule::new([], log));
            match engine::apply(&bad) {
                Err(bitmask_root::engine::Error::Transport(e))
                    if e.to_string().contains("rule 4 of chain output") =>
                {
                    Ok(())
                }
                other => Err(format!("a refused batch must name the rule: {other:?}")),
            }
        })
        .expect("thread in namespace")
        .expect("refused batch");
    assert_eq!(
        nft::ruleset(t.client()).expect("ruleset"),
        running,
        "a refused batch changed the running ruleset"
    );

    // The fresh-start batch creates the table exclusively: on a table that exists (say,
    // created by another bitmask-root in the meantime) the kernel refuses it whole.
    t.client()
        .run(|| -> Result<(), String> {
            let create = transport::encode_create(&plan_here()?, "x").map_err(|e| e.to_string())?;
            match transport::commit(&create) {
                Err(transport::TransportError::Rejected { source, .. })
                    if source.raw_os_error() == Some(libc::EEXIST) =>
                {
                    Ok(())
                }
                other => Err(format!(
                    "an exclusive create over a running table: {other:?}"
                )),
            }
        })
        .expect("thread in namespace")
        .expect("refused create");
    assert_eq!(
        nft::ruleset(t.client()).expect("ruleset"),
        running,
        "a refused create changed the running ruleset"
    );

    let was_up = t
        .client()
        .run(firewall::stop)
        .expect("thread in namespace")
        .expect("stop");
    assert!(was_up, "stop did not find the firewall");
    assert_eq!(
        nft::ruleset(t.client()).expect("ruleset"),
        before,
        "stop leaves no trace"
    );
}

/// The largest policy allowed: a batch of many pages sent as one message, one ACK per
/// message read back without ENOBUFS, the set read back whole.
#[test]
fn the_largest_gateway_list_applies_and_reads_back() {
    let t = Topology::builder().build().expect("topology");
    let b = bin();
    let gws: Vec<IpAddr> = (0..bitmask_root::policy::MAX_GATEWAYS as u32)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0a80_0000 + i)))
        .collect();
    netns_tests::allow_huge_argv().expect("stack limit for a long argv");
    b.start(t.client(), &[], &gws)
        .expect("start with the most gateways");
    assert_eq!(b.isup(t.client(), &[]).expect("isup"), Some(0));
    let mut one_more = gws.clone();
    one_more.push(IpAddr::V4(GATEWAY_V4));
    let mut args: Vec<String> = ["firewall", "start"].map(String::from).to_vec();
    args.extend(one_more.iter().map(|g| g.to_string()));
    let out = b.run(t.client(), &args).expect("run");
    assert_eq!(out.code, Some(2), "one gateway too many: {}", out.stderr);
    assert_eq!(b.isup(t.client(), &[]).expect("isup"), Some(0), "still up");
}

/// IPv6-only hosts and hosts with IPv6 switched off both get a working firewall (the original
/// could not start on either).
#[test]
fn ipv6_only_and_ipv6_disabled_hosts() {
    use netns_tests::Netns;
    let b = bin();
    for v6_only in [true, false] {
        let ns = Netns::create("fam").expect("namespace");
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ])
        .expect("veth");
        ns.ip(&["link", "set", "lo", "up"]).expect("lo");
        if v6_only {
            ns.ip(&["addr", "add", "fd00:9::2/64", "dev", "eth0", "nodad"])
                .expect("addr");
        } else {
            ns.sysctl(&[("net.ipv6.conf.all.disable_ipv6", "1")])
                .expect("sysctl");
            ns.ip(&["addr", "add", "192.168.9.2/24", "dev", "eth0"])
                .expect("addr");
        }
        ns.ip(&["link", "set", "eth0", "up"]).expect("up");
        ns.ip(&["link", "set", "peer0", "up"]).expect("up");
        if v6_only {
            ns.ip(&["-6", "route", "add", "default", "via", "fd00:9::1"])
                .expect("route");
        } else {
            ns.ip(&["route", "add", "default", "via", "192.168.9.1"])
                .expect("route");
        }
        b.start(&ns, &[], &[IpAddr::V6(GATEWAY_V6), IpAddr::V4(GATEWAY_V4)])
            .unwrap_or_else(|e| panic!("start (v6 only: {v6_only}): {e}"));
        assert_eq!(
            b.isup(&ns, &[]).expect("isup"),
            Some(0),
            "v6 only: {v6_only}"
        );
        let table = nft::table(&ns, "inet", "bitmask")
            .expect("nft")
            .expect("table");
        if v6_only {
            assert!(
                table.contains("oifname \"eth0\" ip6 daddr fd00:9::/64 accept"),
                "{table}"
            );
        } else {
            assert!(
                table.contains("oifname \"eth0\" ip daddr 192.168.9.0/24 accept"),
                "{table}"
            );
        }
    }
}
