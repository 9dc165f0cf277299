//! `bitmask-root firewall guard` against the real kernel, in throwaway namespaces: the table
//! holds against other programs (nftables table flags owner and persist), follows the network,
//! survives the guard's death, and the other commands keep their meaning while it runs.
//!
//! Packets are counted where they land. Floods are bounded: one datagram per millisecond, at
//! most a few thousand.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use bitmask_root::nft::lock::NamespaceLock;
use netns_tests::addr::*;
use netns_tests::guard::{GuardProcess, GUARD_MODE_ENV};
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::probe::udp::{udp_send, UdpListener, UdpStream};
use netns_tests::{nft, BitmaskRoot, Netns, SendOpts, Topology};

/// How long a guard gets to print a line it should print.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// The flood's interval and bound: one datagram per ms for at most 20 s.
const FLOOD_EVERY: Duration = Duration::from_millis(1);
const FLOOD_MAX: usize = 20_000;

fn bin() -> BitmaskRoot {
    BitmaskRoot::from_env().expect("the bitmask-root binary (cargo build, or BITMASK_ROOT_BIN)")
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn gw() -> IpAddr {
    IpAddr::V4(GATEWAY_V4)
}

fn connect(ns: &Netns, to: SocketAddr) -> ConnectOutcome {
    let opts = SendOpts {
        timeout: Some(Duration::from_millis(700)),
        ..SendOpts::default()
    };
    tcp_connect(ns, to, b"probe", &opts).expect("tcp probe")
}

/// A UDP listener on the internet host, and proof that the path works without a firewall.
fn internet_listener(t: &Topology) -> UdpListener {
    let l = UdpListener::start(t.internet(), sa(INTERNET_HOST_V4, 9)).expect("listener");
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"baseline",
        &SendOpts::default(),
    )
    .expect("send");
    assert_eq!(
        l.wait_for(1, Duration::from_secs(2)),
        1,
        "without a firewall the internet host must be reachable, or the test proves nothing"
    );
    l.clear();
    l
}

/// A bounded flood from the client to the internet host.
fn flood(t: &Topology) -> UdpStream {
    UdpStream::start(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"flood",
        FLOOD_EVERY,
        FLOOD_MAX,
        &SendOpts::default(),
    )
    .expect("flood")
}

/// The guarded table as `nft list table` prints it, with the refusing rules' counters cut to
/// the word `counter`: their values grow with the refused flood and are not the table's rules.
fn table(ns: &Netns) -> Option<String> {
    nft::table(ns, "inet", "bitmask")
        .expect("nft list table")
        .map(|t| without_counter_values(&t))
}

fn without_counter_values(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    let mut rest = listing;
    while let Some(at) = rest.find("counter packets ") {
        out.push_str(&rest[..at]);
        out.push_str("counter");
        let after = &rest[at + "counter packets ".len()..];
        // Skip "N bytes M".
        let skipped: usize = after
            .split(' ')
            .take(3)
            .map(|w| w.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        rest = &after[skipped.min(after.len())..];
    }
    out.push_str(rest);
    out
}

fn run(ns: &Netns, args: &[&str]) -> netns_tests::CmdOutput {
    bin().run(ns, args).expect("bitmask-root")
}

/// `nft ARGS` in `ns` (exit code and stderr, whatever they are).
fn nft_try(ns: &Netns, args: &[&str]) -> netns_tests::CmdOutput {
    ns.exec("nft", args).expect("nft")
}

/// The control socket path of the guard of namespace `ns`.
fn socket_path(ns: &Netns) -> std::path::PathBuf {
    let m = std::fs::metadata(ns.path()).expect("stat the namespace");
    std::path::PathBuf::from(format!(
        "/run/bitmask-root/guard/net-{}-{}.sock",
        m.dev(),
        m.ino()
    ))
}

fn isup(ns: &Netns) -> netns_tests::CmdOutput {
    run(ns, &["firewall", "isup"])
}

fn log_of(g: &GuardProcess) -> String {
    g.lines().join("\n")
}

#[test]
fn flush_delete_and_nft_file_from_other_programs_change_nothing_and_nothing_leaks() {
    let t = Topology::builder().build().expect("topology");
    let host = internet_listener(&t);
    // Another program's table, so that `flush ruleset` has something to commit (as on a real
    // system; with only an owned table left, a flush commits nothing and nobody is told).
    nft::apply(
        t.client(),
        "table inet other {\n chain c {\n type filter hook output priority 10; policy accept;\n }\n}\n",
    )
    .expect("a foreign table");
    let g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    assert!(log_of(&g).contains("mode owner"), "{}", log_of(&g));
    let before = table(t.client()).expect("the guarded table");
    assert!(before.contains("flags owner"), "{before}");

    let stream = flood(&t);
    std::thread::sleep(Duration::from_millis(100));
    let flushed = nft_try(t.client(), &["flush", "ruleset"]);
    assert!(flushed.success(), "nft flush ruleset: {}", flushed.stderr);
    let deleted = nft_try(t.client(), &["delete", "table", "inet", "bitmask"]);
    assert!(
        !deleted.success() && deleted.stderr.contains("Operation not permitted"),
        "nft delete table must be refused by the kernel: {deleted:?}"
    );
    let flushed_chain = nft_try(t.client(), &["flush", "chain", "inet", "bitmask", "output"]);
    assert!(!flushed_chain.success(), "{flushed_chain:?}");
    nft::apply(
        t.client(),
        "flush ruleset\ntable inet firewall {\n chain output {\n type filter hook output priority 0; policy accept;\n }\n}\n",
    )
    .expect("nft -f with flush ruleset");
    std::thread::sleep(Duration::from_millis(100));
    let sent = stream.stop().expect("flood");

    assert!(sent.sent + sent.failed > 50, "the flood ran: {sent:?}");
    assert_eq!(host.count(), 0, "packets leaked to the internet host");
    assert_eq!(
        table(t.client()).as_deref(),
        Some(before.as_str()),
        "the table changed"
    );
    assert!(
        nft::tables(t.client())
            .expect("tables")
            .contains(&"inet firewall".to_string()),
        "the other program's nft -f took effect"
    );
    // Both committed changes were seen and reported; the refused ones committed nothing.
    let intact = g.wait_for_count(2, LOG_WAIT, |l| {
        l.contains("guard: intact: nftables changed by pid")
    });
    assert!(intact >= 2, "{}", log_of(&g));
    assert_eq!(g.count(|l| l.contains("repaired")), 0, "{}", log_of(&g));
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "{up:?}");
    assert!(up.stdout.contains("guarded by pid"), "{up:?}");
}

/// Moves the client's uplink from 192.168.1.0/24 to 10.9.8.0/24 (new address, new default
/// route); the router answers on both.
fn roam(t: &Topology) {
    t.client()
        .ip_batch(&[
            "addr del 192.168.1.2/24 dev eth0".to_string(),
            "addr add 10.9.8.2/24 dev eth0".to_string(),
            "route replace default via 10.9.8.1 dev eth0".to_string(),
        ])
        .expect("roam");
}

#[test]
fn roaming_re_plans_the_lan_within_a_second_and_a_new_uplink_stays_blocked() {
    let t = Topology::builder()
        .second_uplink(true)
        .build()
        .expect("topology");
    // The second uplink is not there yet: it appears while the guard runs.
    t.client()
        .ip_batch(&[
            "route del default via 192.168.2.1 dev eth1".to_string(),
            "route del default via fd00:2::1 dev eth1".to_string(),
            "addr flush dev eth1".to_string(),
            "link set eth1 down".to_string(),
        ])
        .expect("second uplink away");
    t.router()
        .ip(&["addr", "add", "10.9.8.1/24", "dev", "lan0"])
        .expect("router address");
    let _old_lan = TcpListener::start(t.router(), sa(ROUTER_LAN_V4, 8080)).expect("listen");
    let _new_lan = TcpListener::start(t.router(), sa([10, 9, 8, 1], 8081)).expect("listen");
    let host = internet_listener(&t);
    let g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    assert_eq!(
        connect(t.client(), sa(ROUTER_LAN_V4, 8080)),
        ConnectOutcome::Connected
    );
    assert_eq!(
        connect(t.client(), sa([10, 9, 8, 1], 8081)),
        ConnectOutcome::Refused,
        "not the LAN yet"
    );

    roam(&t);
    // The bound: within one second of the change the new LAN is open, the old closed.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        connect(t.client(), sa([10, 9, 8, 1], 8081)),
        ConnectOutcome::Connected,
        "the new LAN must be reachable: {}",
        log_of(&g)
    );
    assert_eq!(
        connect(t.client(), sa(ROUTER_LAN_V4, 8080)),
        ConnectOutcome::Refused,
        "the old LAN must be closed: {}",
        log_of(&g)
    );
    let table_now = table(t.client()).expect("table");
    assert!(
        table_now.contains("oifname \"eth0\" ip daddr 10.9.8.0/24 accept"),
        "{table_now}"
    );
    assert!(!table_now.contains("192.168.1.0/24"), "{table_now}");
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "isup after roaming: {up:?}");
    assert!(g.count(|l| l.contains("re-planned")) >= 1, "{}", log_of(&g));

    // A second uplink appears and takes the default route: its LAN opens, the internet
    // through it stays blocked.
    let stream = flood(&t);
    t.client()
        .ip_batch(&[
            "link set eth1 up".to_string(),
            "addr add 192.168.2.2/24 dev eth1".to_string(),
            "route replace default via 192.168.2.1 dev eth1".to_string(),
        ])
        .expect("second uplink");
    let _lan2 = TcpListener::start(t.router2().expect("router2"), sa(ROUTER2_LAN_V4, 8082))
        .expect("listen");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        connect(t.client(), sa(ROUTER2_LAN_V4, 8082)),
        ConnectOutcome::Connected,
        "the second uplink's LAN: {}",
        log_of(&g)
    );
    let via_eth1 = SendOpts {
        timeout: Some(Duration::from_millis(700)),
        ..SendOpts::device("eth1")
    };
    let _web = TcpListener::start(t.internet(), sa(INTERNET_HOST_V4, 80)).expect("listen");
    assert_eq!(
        tcp_connect(t.client(), sa(INTERNET_HOST_V4, 80), b"x", &via_eth1).expect("tcp"),
        ConnectOutcome::Refused
    );
    let sent = stream.stop().expect("flood");
    assert!(sent.sent + sent.failed > 50, "{sent:?}");
    assert_eq!(host.count(), 0, "packets leaked through the new uplink");
    assert_eq!(isup(t.client()).code, Some(0));
}

#[test]
fn a_burst_of_50_address_changes_gives_a_few_applies_and_no_leak() {
    let t = Topology::builder().build().expect("topology");
    let host = internet_listener(&t);
    let g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    let stream = flood(&t);
    let mut lines = Vec::new();
    for i in 0..25 {
        lines.push(format!("addr add 10.77.{i}.2/24 dev eth0"));
    }
    for i in 0..25 {
        lines.push(format!("addr del 10.77.{i}.2/24 dev eth0"));
    }
    lines.push("addr add 10.78.0.2/24 dev eth0".to_string());
    t.client().ip_batch(&lines).expect("burst");
    // Wait until the guard has read the network after the burst and applied its final state.
    let planned = g.wait_for(
        |l| l.contains("network: changed") && l.contains("re-planned"),
        LOG_WAIT,
    );
    assert!(planned.is_some(), "{}", log_of(&g));
    std::thread::sleep(Duration::from_millis(600));
    let sent = stream.stop().expect("flood");
    let applies = g.count(|l| l.contains("re-planned"));
    assert!(
        (1..=3).contains(&applies),
        "51 changes in a burst gave {applies} applies:\n{}",
        log_of(&g)
    );
    assert!(sent.sent + sent.failed > 50, "{sent:?}");
    assert_eq!(host.count(), 0, "packets leaked during the burst");
    let now = table(t.client()).expect("table");
    assert!(
        now.contains("10.78.0.0/24") && !now.contains("10.77."),
        "{now}"
    );
    assert_eq!(isup(t.client()).code, Some(0));
}

#[test]
fn kill_9_leaves_the_table_blocking_and_a_new_guard_adopts_it_with_no_window() {
    let t = Topology::builder().build().expect("topology");
    let host = internet_listener(&t);
    let mut first = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    let stream = flood(&t);
    std::thread::sleep(Duration::from_millis(100));
    first.signal(libc::SIGKILL).expect("kill -9");
    let (code, _) = first.finish(Duration::from_secs(5)).expect("reap");
    assert_eq!(code, None, "killed by a signal");
    std::thread::sleep(Duration::from_millis(200));
    let orphan = table(t.client()).expect("the table stays after kill -9");
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "{up:?}");
    assert!(up.stdout.contains("orphaned"), "{up:?}");

    // A new guard with the same policy adopts the table as it is...
    let second = bin()
        .guard(t.client(), &[], &[gw()], &[])
        .expect("second guard");
    assert!(
        log_of(&second).contains("adopted the orphaned table"),
        "{}",
        log_of(&second)
    );
    assert!(
        table(t.client()).expect("table").contains("flags owner"),
        "owned again"
    );
    std::thread::sleep(Duration::from_millis(100));
    let sent = stream.stop().expect("flood");
    assert!(sent.sent + sent.failed > 50, "{sent:?}");
    assert_eq!(
        host.count(),
        0,
        "packets leaked across the guard's death and the adoption"
    );
    assert!(orphan.contains("bitmask-root firewall"), "{orphan}");
    let mut second = second;
    second.signal(libc::SIGKILL).expect("kill -9"); // orphaned again
    second.finish(Duration::from_secs(5)).expect("reap");

    // A guard with other gateways replaces the orphan in one transaction: no window either.
    let stream = flood(&t);
    std::thread::sleep(Duration::from_millis(100));
    let third = bin()
        .guard(t.client(), &[], &[IpAddr::V4(gateway_v4(2))], &[])
        .expect("third guard");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        log_of(&third).contains("replaced the orphaned table"),
        "{}",
        log_of(&third)
    );
    let sent = stream.stop().expect("flood");
    assert!(sent.sent + sent.failed > 50, "{sent:?}");
    assert_eq!(host.count(), 0, "packets leaked across the replacement");
    drop(third); // SIGTERM: the table stays, orphaned

    // firewall stop removes the orphan; then traffic flows again.
    let out = run(t.client(), &["firewall", "stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(table(t.client()), None);
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"after",
        &SendOpts::default(),
    )
    .expect("send");
    assert_eq!(host.wait_for(1, Duration::from_secs(2)), 1, "after stop");
}

#[test]
fn start_and_stop_go_through_the_guard_and_stale_sockets_are_ignored() {
    let gw2 = IpAddr::V4(gateway_v4(2));
    let t = Topology::builder()
        .gateways(&[gw(), gw2])
        .build()
        .expect("topology");
    let _l1 = TcpListener::start(t.internet(), sa(GATEWAY_V4, 443)).expect("listen");
    let _l2 = TcpListener::start(t.internet(), sa(gw2, 443)).expect("listen");
    let mut g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    assert_eq!(
        connect(t.client(), sa(GATEWAY_V4, 443)),
        ConnectOutcome::Connected
    );
    assert_eq!(connect(t.client(), sa(gw2, 443)), ConnectOutcome::Refused);

    // A second guard is refused and changes nothing.
    let second = run(t.client(), &["firewall", "guard", &gw2.to_string()]);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert!(second.stderr.contains("already runs"), "{second:?}");

    // firewall start hands the new gateways to the guard.
    let out = run(t.client(), &["firewall", "start", &gw2.to_string()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("through its guard"), "{out:?}");
    assert!(g
        .wait_for(|l| l.contains("guard: updated:"), LOG_WAIT)
        .is_some());
    assert_eq!(connect(t.client(), sa(gw2, 443)), ConnectOutcome::Connected);
    assert_eq!(
        connect(t.client(), sa(GATEWAY_V4, 443)),
        ConnectOutcome::Refused
    );
    assert!(table(t.client()).expect("table").contains("flags owner"));
    // A bad gateway is still a usage error, and changes nothing.
    let bad = run(t.client(), &["firewall", "start", "127.1"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");

    // firewall stop makes it remove the table and end, exit 0 both.
    let out = run(t.client(), &["firewall", "stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("its guard"), "{out:?}");
    let (code, stderr) = g.finish(Duration::from_secs(5)).expect("guard exit");
    assert_eq!(code, Some(0), "guard: {stderr}; {}", log_of(&g));
    assert_eq!(table(t.client()), None);
    assert!(
        !socket_path(t.client()).exists(),
        "the guard removes its socket"
    );
    assert_eq!(isup(t.client()).code, Some(1));

    // A guard killed with SIGKILL leaves its socket file behind: it is detected and ignored.
    let mut g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    g.signal(libc::SIGKILL).expect("kill -9");
    g.finish(Duration::from_secs(5)).expect("reap");
    assert!(
        socket_path(t.client()).exists(),
        "a killed guard leaves its socket"
    );
    let out = run(t.client(), &["firewall", "start", &gw2.to_string()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("guard"), "no guard runs: {out:?}");
    assert!(
        !socket_path(t.client()).exists(),
        "the stale socket was removed"
    );
    assert_eq!(connect(t.client(), sa(gw2, 443)), ConnectOutcome::Connected);

    // A socket file nobody listens on (as after a crash) does not stop a new guard either.
    {
        let l = std::os::unix::net::UnixListener::bind(socket_path(t.client())).expect("bind");
        drop(l);
    }
    assert!(socket_path(t.client()).exists());
    let g = bin()
        .guard(t.client(), &[], &[gw()], &[])
        .expect("guard over a stale socket");
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "{up:?}");
    assert!(
        up.stdout.contains(&format!("guarded by pid {}", g.pid())),
        "{up:?}"
    );
    let out = run(t.client(), &["firewall", "stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(table(t.client()), None);
}

#[test]
fn sigterm_ends_the_guard_with_exit_0_and_leaves_the_firewall_up() {
    let t = Topology::builder().build().expect("topology");
    let host = internet_listener(&t);
    let mut g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    g.signal(libc::SIGTERM).expect("SIGTERM");
    let (code, stderr) = g.finish(Duration::from_secs(5)).expect("exit");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(log_of(&g).contains("guard: left:"), "{}", log_of(&g));
    assert!(table(t.client()).is_some(), "the firewall stays up");
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"x",
        &SendOpts::default(),
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(host.count(), 0);
    let up = isup(t.client());
    assert!(up.stdout.contains("orphaned"), "{up:?}");
    assert_eq!(run(t.client(), &["firewall", "stop"]).code, Some(0));
}

#[test]
fn the_watch_mode_repairs_a_flushed_or_deleted_table() {
    let t = Topology::builder().build().expect("topology");
    let g = bin()
        .guard(t.client(), &[], &[gw()], &[(GUARD_MODE_ENV, "watch")])
        .expect("guard");
    assert!(log_of(&g).contains("mode watch"), "{}", log_of(&g));
    let before = table(t.client()).expect("table");
    assert!(
        !before.contains("flags"),
        "no table flags in watch mode: {before}"
    );

    assert!(nft_try(t.client(), &["flush", "ruleset"]).success());
    assert_eq!(
        g.wait_for_count(1, LOG_WAIT, |l| l.contains("guard: repaired:")),
        1,
        "{}",
        log_of(&g)
    );
    assert!(nft_try(t.client(), &["delete", "table", "inet", "bitmask"]).success());
    assert_eq!(
        g.wait_for_count(2, LOG_WAIT, |l| l.contains("guard: repaired:")),
        2,
        "{}",
        log_of(&g)
    );
    assert!(nft_try(t.client(), &["flush", "chain", "inet", "bitmask", "output"]).success());
    assert_eq!(
        g.wait_for_count(3, LOG_WAIT, |l| l.contains("guard: repaired:")),
        3,
        "{}",
        log_of(&g)
    );
    // Let a repair that is still being verified finish before comparing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(table(t.client()).as_deref(), Some(before.as_str()));
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "{up:?}");
    assert!(up.stdout.contains("mode watch"), "{up:?}");
}

#[test]
fn dry_run_says_when_the_table_is_guarded_or_orphaned() {
    let t = Topology::builder().build().expect("topology");
    let g = bin().guard(t.client(), &[], &[gw()], &[]).expect("guard");
    let out = run(t.client(), &["--dry-run", "firewall", "stop"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, "delete table inet bitmask\n");
    assert!(
        out.stderr.contains(&format!("a guard (pid {})", g.pid())),
        "{out:?}"
    );
    let out = run(
        t.client(),
        &["--dry-run", "firewall", "start", &GATEWAY_V4.to_string()],
    );
    assert!(out.stdout.starts_with("table inet bitmask {"), "{out:?}");
    assert!(out.stderr.contains("would hand it this policy"), "{out:?}");
    let mut g = g;
    g.signal(libc::SIGKILL).expect("kill -9"); // the table is orphaned, its socket stale
    g.finish(Duration::from_secs(5)).expect("reap");
    let out = run(
        t.client(),
        &["--dry-run", "firewall", "guard", &GATEWAY_V4.to_string()],
    );
    assert!(out.stderr.contains("orphaned"), "{out:?}");
    assert!(
        socket_path(t.client()).exists(),
        "--dry-run removes nothing"
    );
    assert_eq!(run(t.client(), &["firewall", "stop"]).code, Some(0));
}

/// `firewall guard` without a gateway keeps a blocking firewall (as `firewall block`);
/// `firewall start GATEWAY` and `firewall block` hand it the new policy, in one transaction.
#[test]
fn a_guard_without_gateways_blocks_and_start_and_block_switch_it() {
    let t = Topology::builder().build().expect("topology");
    let _l = TcpListener::start(t.internet(), sa(GATEWAY_V4, 443)).expect("listen");
    let host = internet_listener(&t);
    let g = bin().guard(t.client(), &[], &[], &[]).expect("guard");
    let blocking = table(t.client()).expect("table");
    assert!(
        blocking.contains("; mode block;") && blocking.contains("flags owner"),
        "{blocking}"
    );
    assert_eq!(
        connect(t.client(), sa(GATEWAY_V4, 443)),
        ConnectOutcome::Refused,
        "no gateway is open"
    );
    let up = isup(t.client());
    assert_eq!(up.code, Some(0), "{up:?}");
    assert!(up.stdout.contains("guarded by pid"), "{up:?}");

    let out = run(t.client(), &["firewall", "start", &GATEWAY_V4.to_string()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("started through its guard"), "{out:?}");
    assert_eq!(
        connect(t.client(), sa(GATEWAY_V4, 443)),
        ConnectOutcome::Connected,
        "{}",
        log_of(&g)
    );

    let out = run(t.client(), &["firewall", "block"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("blocking through its guard"), "{out:?}");
    assert_eq!(table(t.client()).as_deref(), Some(blocking.as_str()));
    assert_eq!(
        connect(t.client(), sa(GATEWAY_V4, 443)),
        ConnectOutcome::Refused
    );
    assert_eq!(
        g.count(|l| l.contains("guard: updated:")),
        2,
        "{}",
        log_of(&g)
    );
    udp_send(
        t.client(),
        sa(INTERNET_HOST_V4, 9),
        b"x",
        &SendOpts::default(),
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(host.count(), 0);
    assert_eq!(run(t.client(), &["firewall", "stop"]).code, Some(0));
}

/// Whether the command lock of `ns` is free right now (taken and released at once).
fn lock_is_free(ns: &Netns) -> bool {
    ns.run(NamespaceLock::try_acquire)
        .expect("thread in namespace")
        .expect("try the lock")
        .is_some()
}

/// The guard holds the namespace's command lock for its transactions only: an idle guard
/// leaves it free (one-shot commands run), and a repair waits while a command holds it.
#[test]
fn a_guard_takes_the_command_lock_only_for_its_transactions() {
    let t = Topology::builder().build().expect("topology");
    let ns = t.client();
    let g = bin()
        .guard(ns, &[], &[gw()], &[(GUARD_MODE_ENV, "watch")])
        .expect("guard");
    let before = table(ns).expect("table");
    assert!(lock_is_free(ns), "an idle guard holds no command lock");
    for args in [
        &["firewall", "isup"][..],
        &["fw-email", "start", "0"],
        &["fw-email", "isup"],
        &["fw-email", "stop"],
    ] {
        let out = run(ns, args);
        assert_eq!(out.code, Some(0), "{args:?} while a guard runs: {out:?}");
    }
    // The fw-email commits were other programs' changes: seen, and the table found intact.
    let intact = g.wait_for_count(2, LOG_WAIT, |l| l.contains("guard: intact:"));
    assert!(intact >= 2, "{}", log_of(&g));
    assert_eq!(g.count(|l| l.contains("repaired")), 0, "{}", log_of(&g));

    // While a command holds the lock, the guard cannot repair (nor change anything)...
    let held = ns
        .run(NamespaceLock::acquire)
        .expect("thread in namespace")
        .expect("the lock");
    assert!(nft_try(ns, &["delete", "table", "inet", "bitmask"]).success());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        table(ns),
        None,
        "the guard repaired while another command held the lock: {}",
        log_of(&g)
    );
    assert_eq!(g.count(|l| l.contains("guard: repaired:")), 0);
    // ...and repairs as soon as it is released.
    drop(held);
    assert_eq!(
        g.wait_for_count(1, LOG_WAIT, |l| l.contains("guard: repaired:")),
        1,
        "{}",
        log_of(&g)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(table(ns).as_deref(), Some(before.as_str()));
    assert!(lock_is_free(ns), "released after the repair");
    assert_eq!(
        g.count(|l| l.contains("guard: error:")),
        0,
        "{}",
        log_of(&g)
    );
}

/// `firewall start` (new gateways each), `firewall block` and `firewall isup` from many
/// processes at once while a guard runs: none waits on the guard while holding the lock the
/// guard needs, so every one exits 0; the guard applied each handed policy, and the table in
/// the end is one of them, still owned by the guard.
#[test]
fn starts_blocks_and_isups_at_once_through_a_guard_never_deadlock() {
    const ROUNDS: usize = 3;
    const STARTS: usize = 6;
    const OTHERS: usize = 4;
    let t = Topology::builder().build().expect("topology");
    let ns = t.client();
    let b = bin();
    let g = b.guard(ns, &[], &[gw()], &[]).expect("guard");
    let gws: Vec<String> = (0..STARTS)
        .map(|i| gateway_v4(10 + i as u8).to_string())
        .collect();
    let mut plans: Vec<String> = gws
        .iter()
        .map(|gw| {
            let out = b
                .run(ns, &["--dry-run", "firewall", "start", gw])
                .expect("dry run");
            out.stdout
        })
        .collect();
    plans.push(
        b.run(ns, &["--dry-run", "firewall", "block"])
            .expect("dry run")
            .stdout,
    );
    for round in 0..ROUNDS {
        let outs = std::sync::Mutex::new(Vec::new());
        let barrier = std::sync::Barrier::new(STARTS + 2 * OTHERS);
        std::thread::scope(|s| {
            for i in 0..STARTS + 2 * OTHERS {
                let (b, gws, outs, barrier) = (&b, &gws, &outs, &barrier);
                s.spawn(move || {
                    let args: Vec<&str> = match i {
                        i if i < STARTS => vec!["firewall", "start", &gws[i]],
                        i if i < STARTS + OTHERS => vec!["firewall", "isup"],
                        _ => vec!["firewall", "block"],
                    };
                    barrier.wait();
                    let out = b.run(ns, &args).expect("bitmask-root");
                    outs.lock().expect("outs").push((args.join(" "), out));
                });
            }
        });
        for (what, out) in outs.into_inner().expect("outs") {
            let all = format!("{}{}", out.stdout, out.stderr);
            assert_eq!(out.code, Some(0), "round {round}: {what}: {all}");
            assert!(
                !all.contains("another program"),
                "round {round}: {what}: {all}"
            );
            if !what.ends_with("isup") {
                assert!(
                    out.stdout.contains("through its guard"),
                    "round {round}: {what}: {all}"
                );
            } else {
                assert!(out.stdout.contains("guarded by pid"), "{what}: {all}");
            }
        }
        let now = table(ns).expect("table");
        // The listing names the owner (`# progname`, `flags owner`); the plan does not.
        let body = |t: &str| -> Vec<String> {
            without_counter_values(t)
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty() && l.trim() != "flags owner")
                .map(str::to_string)
                .collect()
        };
        assert!(
            plans.iter().any(|p| body(p) == body(&now)),
            "round {round}: the table is none of the plans:\n{now}"
        );
        assert!(now.contains("flags owner"), "{now}");
    }
    let updates = g.count(|l| l.contains("guard: updated:"));
    assert_eq!(
        updates,
        ROUNDS * (STARTS + OTHERS),
        "every handed policy applied: {}",
        log_of(&g)
    );
    assert_eq!(
        g.count(|l| l.contains("guard: error:")),
        0,
        "{}",
        log_of(&g)
    );
}

/// What the guard relies on, checked against this kernel with the library's own socket type:
/// the table flags owner and persist, orphans, adoption, and replacing an orphan.
#[test]
fn the_kernel_keeps_owned_tables_as_the_guard_expects() {
    use bitmask_root::nft::transport::{self, Session, TableFlags};
    use bitmask_root::{discovery, engine, firewall, policy::Policy, readback};

    let t = Topology::builder().build().expect("topology");
    t.client()
        .run(|| -> Result<(), String> {
            let s = |e: transport::TransportError| e.to_string();
            let errno =
                |r: Result<Option<transport::Generation>, transport::TransportError>| match r {
                    Err(transport::TransportError::Rejected { source, .. }) => {
                        source.raw_os_error()
                    }
                    Ok(_) => Some(0),
                    Err(e) => panic!("{e}"),
                };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let net = rt
                .block_on(discovery::discover())
                .map_err(|e| e.to_string())?;
            let policy = Policy::builder()
                .gateway(gw())
                .build()
                .map_err(|e| e.to_string())?;
            let rs = firewall::plan(&policy, &net).map_err(|e| e.to_string())?;
            let (comment, _) = engine::comment_of(&rs).map_err(|e| e.to_string())?;
            let own = || readback::ownership("bitmask").map_err(|e| e.to_string());
            let nft = |args: &[&str]| {
                std::process::Command::new("nft")
                    .args(args)
                    .output()
                    .map(|o| o.status.success())
                    .map_err(|e| e.to_string())
            };
            let flagged =
                transport::encode_replace_flagged(&rs, &comment, TableFlags::OWNER_PERSIST)
                    .map_err(s)?;
            let plain = transport::encode_replace(&rs, &comment).map_err(s)?;
            let remove = transport::encode_remove("bitmask").map_err(s)?;
            let adopt = transport::encode_adopt("bitmask", TableFlags::OWNER_PERSIST).map_err(s)?;

            // Owned by A: nobody else may change it; a flush skips it; A may replace it.
            let mut a = Session::open().map_err(s)?;
            let committed = a.commit(&flagged).map_err(s)?;
            // A session's commit echoes its generation, as a one-shot commit does.
            assert_eq!(committed, Some(transport::generation().map_err(s)?));
            let o = own()?.ok_or("no table")?;
            assert_eq!(o.flags, TableFlags::OWNER_PERSIST);
            assert_eq!(o.owner, Some(a.portid()));
            assert_eq!(errno(transport::commit(&plain)), Some(libc::EPERM));
            assert_eq!(errno(transport::commit(&remove)), Some(libc::EPERM));
            assert_eq!(errno(transport::commit(&adopt)), Some(libc::EPERM));
            assert!(!nft(&["delete", "table", "inet", "bitmask"])?);
            assert!(nft(&["flush", "ruleset"])?);
            assert_eq!(own()?, Some(o), "flush ruleset skipped the owned table");
            a.commit(&flagged).map_err(s)?;
            assert_eq!(own()?, Some(o), "the owner replaced it and still owns it");

            // Closing a socket releases it once no process holds it any more: a program that
            // another test thread is starting may hold it until its exec.
            let released = |want: &dyn Fn(Option<readback::Ownership>) -> bool| {
                let end = std::time::Instant::now() + Duration::from_secs(5);
                loop {
                    let o = own()?;
                    if want(o) || std::time::Instant::now() > end {
                        return Ok::<_, String>(o);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            };

            // A closes: the table stays, orphaned (persist without owner).
            drop(a);
            let orphan = released(&|o| o.is_some_and(|o| !o.is_owned()))?
                .ok_or("the table went with its owner")?;
            assert!(orphan.is_orphaned(), "{orphan:?}");
            assert_eq!(orphan.owner, None);

            // B adopts it in place with owner and persist (owner alone is refused).
            let mut b = Session::open().map_err(s)?;
            let owner_only = transport::encode_adopt("bitmask", TableFlags::OWNER).map_err(s)?;
            assert_eq!(errno(b.commit(&owner_only)), Some(libc::EOPNOTSUPP));
            b.commit(&adopt).map_err(s)?;
            assert_eq!(own()?.and_then(|o| o.owner), Some(b.portid()));
            drop(b);
            released(&|o| o.is_some_and(|o| o.is_orphaned()))?;

            // An orphan is an ordinary table again: a one-shot replace (whose first table
            // add carries no flags) and a plain flush work on it.
            assert_eq!(errno(transport::commit(&plain)), Some(0));
            assert_eq!(own()?.map(|o| o.flags), Some(TableFlags::NONE));
            // A plain table cannot gain persist in place; a replacing batch gives it.
            let mut c = Session::open().map_err(s)?;
            assert_eq!(errno(c.commit(&adopt)), Some(libc::EOPNOTSUPP));
            c.commit(&flagged).map_err(s)?;
            assert_eq!(own()?.and_then(|o| o.owner), Some(c.portid()));
            drop(c);
            released(&|o| o.is_some_and(|o| o.is_orphaned()))?;
            assert!(nft(&["flush", "ruleset"])?);
            assert_eq!(own()?, None, "flush ruleset deletes an orphan");

            // Owner without persist: the table goes with its socket.
            let mut d = Session::open().map_err(s)?;
            let owner_only_table =
                transport::encode_replace_flagged(&rs, &comment, TableFlags::OWNER).map_err(s)?;
            d.commit(&owner_only_table).map_err(s)?;
            assert!(own()?.is_some());
            drop(d);
            assert_eq!(
                released(&|o| o.is_none())?,
                None,
                "an owned table without persist dies with its owner"
            );
            Ok(())
        })
        .expect("thread in namespace")
        .expect("kernel semantics");
}
