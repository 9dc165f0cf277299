//! `firewall explain` and `firewall status` from the command line, against the real kernel in
//! the leak-matrix topology: exit codes, the words a user reads, the JSON schemas clients
//! rely on, counters that count what was refused, and `isup` unmoved by them.

use std::net::{IpAddr, SocketAddr};

use netns_tests::addr::*;
use netns_tests::probe::udp::udp_send;
use netns_tests::{BitmaskRoot, CmdOutput, Netns, SendOpts, Topology};
use serde_json::Value;

fn bin() -> BitmaskRoot {
    BitmaskRoot::from_env().expect("the bitmask-root binary (cargo build, or BITMASK_ROOT_BIN)")
}

fn run(b: &BitmaskRoot, ns: &Netns, args: &str) -> CmdOutput {
    let words: Vec<&str> = args.split_whitespace().collect();
    b.run(ns, &words).expect("bitmask-root runs")
}

/// Runs as `nobody` (no capabilities).
fn run_unprivileged(b: &BitmaskRoot, ns: &Netns, args: &str) -> CmdOutput {
    let words: Vec<&str> = args.split_whitespace().collect();
    let c = b
        .command_wrapped(
            ns,
            &[
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
            ],
            &words,
        )
        .expect("command");
    netns_tests::cmd::run(c, None, netns_tests::cmd::DEFAULT_TIMEOUT).expect("runs")
}

fn json(out: &CmdOutput) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr))
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Asserts that an object has exactly these keys.
#[track_caller]
fn assert_keys(v: &Value, want: &[&str]) {
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(keys(v), want, "keys of {v}");
}

fn is_str_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

/// The status schema (version 1), as the README documents it.
fn check_status_schema(v: &Value) {
    assert_eq!(v["schema"], "bitmask-root/status");
    assert_eq!(v["version"], 1);
    assert_keys(
        v,
        &[
            "forwarding",
            "gateways",
            "guard",
            "lan",
            "mode",
            "profile",
            "reason",
            "refused",
            "resolver",
            "schema",
            "state",
            "tunnel",
            "version",
        ],
    );
    assert!(["up", "down", "stale", "tampered"].contains(&v["state"].as_str().unwrap_or("")));
    assert!(is_str_or_null(&v["reason"]) && is_str_or_null(&v["profile"]));
    assert!(["connect", "block"].contains(&v["mode"].as_str().unwrap_or("connect")));
    assert!(is_str_or_null(&v["tunnel"]) && is_str_or_null(&v["guard"]));
    assert!(v["gateways"]
        .as_array()
        .is_some_and(|a| a.iter().all(Value::is_string)));
    if !v["resolver"].is_null() {
        assert!(v["resolver"]["address"].is_string());
        assert!(is_str_or_null(&v["resolver"]["routed_via"]));
        assert!(v["resolver"]["through_tunnel"].is_boolean());
    }
    if !v["lan"].is_null() {
        assert!(v["lan"]["mode"].is_string());
        for i in v["lan"]["interfaces"].as_array().expect("interfaces") {
            assert!(i["name"].is_string());
            assert!(i["prefixes"]
                .as_array()
                .expect("prefixes")
                .iter()
                .all(Value::is_string));
        }
    }
    if !v["forwarding"].is_null() {
        assert!(
            v["forwarding"]["ip_forward"].is_boolean() || v["forwarding"]["ip_forward"].is_null()
        );
        assert_keys(&v["forwarding"], &["ip_forward", "filtered", "dns_guarded"]);
        assert!(v["forwarding"]["filtered"].is_boolean());
        assert!(v["forwarding"]["dns_guarded"].is_boolean());
    }
    if !v["refused"].is_null() {
        let r = &v["refused"];
        assert!(r["total"]["packets"].is_u64() && r["total"]["bytes"].is_u64());
        assert_keys(&r["by_kind"], &["outside_tunnel", "dns", "forwarded"]);
        for rule in r["rules"].as_array().expect("rules") {
            assert_keys(
                rule,
                &["chain", "index", "rule", "kind", "packets", "bytes"],
            );
            assert!(["outside_tunnel", "dns", "forwarded"]
                .contains(&rule["kind"].as_str().unwrap_or("")));
        }
    }
}

/// The explain schema (version 1), as the README documents it.
fn check_explain_schema(v: &Value) {
    assert_eq!(v["schema"], "bitmask-root/explain");
    assert_eq!(v["version"], 1);
    assert_keys(
        v,
        &[
            "schema",
            "version",
            "basis",
            "warning",
            "packet",
            "verdict",
            "passes",
            "fate",
            "tcp_reset",
            "oif",
            "route",
            "rerouted",
            "rule",
            "accepted",
            "rewrite",
            "masquerade",
            "logged",
            "chains",
            "text",
        ],
    );
    assert_keys(
        &v["packet"],
        &[
            "family",
            "protocol",
            "src",
            "dst",
            "sport",
            "dport",
            "icmp_type",
            "via",
            "in",
        ],
    );
    assert!(["running", "plan", "not-running"].contains(&v["basis"].as_str().unwrap_or("")));
    assert!(["pass", "reject", "drop", "no-route"].contains(&v["verdict"].as_str().unwrap_or("")));
    assert!([
        "sent",
        "delivered",
        "rejected",
        "dropped",
        "no-route",
        "expired"
    ]
    .contains(&v["fate"].as_str().unwrap_or("")));
    assert!(v["passes"].is_boolean() && v["tcp_reset"].is_boolean());
    for r in [&v["route"], &v["rerouted"]] {
        if !r.is_null() {
            assert_keys(r, &["oif", "local", "src"]);
        }
    }
    if !v["rule"].is_null() {
        assert_keys(&v["rule"], &["chain", "hook", "index", "text"]);
    }
    for r in v["accepted"].as_array().expect("accepted") {
        assert_keys(r, &["chain", "hook", "index", "text"]);
    }
    if !v["rewrite"].is_null() {
        assert_keys(&v["rewrite"], &["dst", "dport", "rule"]);
    }
    if !v["masquerade"].is_null() {
        assert_keys(&v["masquerade"], &["oif", "rule"]);
    }
    for c in v["chains"].as_array().expect("chains") {
        assert_keys(c, &["hook", "chain", "iif", "oif", "end"]);
    }
    assert!(v["text"].is_string());
}

#[test]
fn explain_in_words_and_json() {
    assert!(netns_tests::can_run(), "needs root and ip");
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let b = bin();

    // No firewall: nothing is filtered, it says so, exit 0.
    let out = run(&b, t.client(), "firewall explain 203.0.113.10:443");
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("The firewall is not running"),
        "{}",
        out.stdout
    );

    b.start(t.client(), &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("start");

    let out = run(&b, t.client(), "firewall explain 203.0.113.10:443");
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("passes: it goes through the tunnel (tun0); 203.0.113.10:443 (tcp) leaves by tun0; rule: `oifname \"tun*\" accept`"),
        "{}",
        out.stdout
    );

    // A printer on another network, from a socket bound to the LAN device.
    let out = run(
        &b,
        t.client(),
        "firewall explain 192.168.2.5:631 --via eth0",
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "rejected with a TCP reset: 192.168.2.5 would leave by eth0, outside the tunnel (tun*), and is not a VPN gateway; it is not in a local network of eth0 (LAN private covers 192.168.1.0/24, fd00:1::/64, fe80::/64); rule: `meta l4proto tcp counter reject with tcp reset` (chain output)."
    );

    // The LAN printer itself.
    let out = run(&b, t.client(), "firewall explain 192.168.1.1:631");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("192.168.1.0/24, a local network of eth0"),
        "{}",
        out.stdout
    );

    // DNS to the LAN router: routed to eth0, rewritten to the resolver, routed again into the
    // tunnel; output lets the rewritten query on, dns_guard lets it into the tunnel.
    let out = run(&b, t.client(), "firewall explain 192.168.1.1:53 udp --json");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let v = json(&out);
    check_explain_schema(&v);
    assert_eq!(v["basis"], "running");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["rewrite"]["dst"], "10.42.0.1");
    assert_eq!(v["rewrite"]["dport"], 53);
    assert_eq!(v["route"]["oif"], "eth0");
    assert_eq!(v["rerouted"]["oif"], "tun0");
    assert_eq!(v["oif"], "tun0");
    assert_eq!(
        v["rule"]["text"],
        "ct status dnat ip daddr 10.42.0.1 udp dport 53 accept"
    );
    assert_eq!(v["accepted"][1]["chain"], "dns_guard");
    assert_eq!(v["accepted"][1]["text"], "oifname \"tun*\" accept");
    assert!(v["text"]
        .as_str()
        .unwrap_or("")
        .contains("rewritten to 10.42.0.1:53"));
    // From a socket bound to eth0 the rewritten query would leave in clear: dns_guard
    // drops it.
    let out = run(
        &b,
        t.client(),
        "firewall explain 192.168.1.1:53 udp --via eth0 --json",
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let v = json(&out);
    check_explain_schema(&v);
    assert_eq!(v["verdict"], "drop");
    assert_eq!(v["fate"], "dropped");
    assert_eq!(v["rule"]["chain"], "dns_guard");
    assert_eq!(v["rule"]["hook"], "postrouting");
    assert_eq!(v["rule"]["text"], "udp dport 53 counter drop");
    assert!(v["text"]
        .as_str()
        .unwrap_or("")
        .starts_with("dropped: DNS is rewritten to 10.42.0.1:53 (the VPN's resolver) and may leave only through the tunnel (tun*), but this socket is bound to eth0"));

    // DNS to the internet: rewritten, through the tunnel, masqueraded.
    let out = run(
        &b,
        t.client(),
        "firewall explain [2001:db8:1::10]:53 udp --json",
    );
    assert_eq!(out.code, Some(1));
    check_explain_schema(&json(&out));
    let out = run(
        &b,
        t.client(),
        "firewall explain 198.51.100.53:53 udp --json",
    );
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let v = json(&out);
    check_explain_schema(&v);
    assert_eq!(v["oif"], "tun0");
    assert_eq!(v["masquerade"]["oif"], "tun0");

    // The gateway, and ICMP by default without a port.
    let out = run(&b, t.client(), "firewall explain 198.51.100.1 --json");
    assert_eq!(out.code, Some(0));
    let v = json(&out);
    assert_eq!(v["packet"]["protocol"], "icmp");
    assert_eq!(v["rule"]["text"], "ip daddr @gateways4 accept");

    // Usage errors: exit 2, one line, nothing asked.
    for bad in [
        "firewall explain",
        "firewall explain 1.2.3",
        "firewall explain 192.168.1.1:99999",
        "firewall explain 192.168.1.1:0",
        "firewall explain 192.168.1.1 tcp",
        "firewall explain 192.168.1.1:53 icmp",
        "firewall explain 192.168.1.1:53 --gateway 198.51.100.1",
        "firewall explain 192.168.1.1:53 --in eth0",
        "firewall explain 192.168.1.1:53 --via eth0 --in eth0 --src 192.168.1.9",
        "firewall explain 192.168.1.1:53 --src 2001:db8::1",
        "firewall explain 192.168.1.1:53 --bogus",
        "firewall explain fe80::1%eth0/1",
    ] {
        let out = run(&b, t.client(), bad);
        assert_eq!(out.code, Some(2), "{bad}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{bad}");
        assert_eq!(out.stderr.lines().count(), 1, "{bad}: {}", out.stderr);
        assert!(out.stderr.starts_with("bitmask-root: "), "{bad}");
    }

    // Forwarded traffic (a shared connection's client on the LAN) goes by the forward chain:
    // through the tunnel, and not to the gateway in clear.
    netns_tests::container::enable_forwarding(t.client()).expect("forwarding");
    let out = run(
        &b,
        t.client(),
        "firewall explain 203.0.113.10:443 --in eth0 --src 192.168.1.77 --json",
    );
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let v = json(&out);
    check_explain_schema(&v);
    assert_eq!(v["packet"]["in"], "eth0");
    assert_eq!(v["rule"]["chain"], "forward");
    assert_eq!(v["oif"], "tun0");
    let out = run(
        &b,
        t.client(),
        "firewall explain 198.51.100.1:1194 udp --in eth0 --src 192.168.1.77",
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "198.51.100.1 is a VPN gateway, and forwarded traffic gets no clear path to it"
        ),
        "{}",
        out.stdout
    );

    // Without root: the running table cannot be read (exit 1, says what to do) ...
    let out = run_unprivileged(&b, t.client(), "firewall explain 203.0.113.10:443");
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("--dry-run"), "{}", out.stderr);
    // ... but the plan can, with --dry-run, and with the options given.
    let out = run_unprivileged(
        &b,
        t.client(),
        "--dry-run --lan off firewall explain 192.168.1.1:631 --gateway 198.51.100.1 --json",
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let v = json(&out);
    check_explain_schema(&v);
    assert_eq!(v["basis"], "plan");
    assert!(v["text"]
        .as_str()
        .unwrap_or("")
        .contains("the local network is closed (LAN off)"));
    let out = run_unprivileged(
        &b,
        t.client(),
        "--dry-run firewall explain 198.51.100.1:443",
    );
    assert_eq!(
        out.code,
        Some(1),
        "without --gateway the plan has no gateway: {}",
        out.stdout
    );
    assert!(out.stdout.contains("add --gateway GW"), "{}", out.stdout);

    // A network change makes the running firewall stale: the answer says so.
    t.client()
        .ip(&["addr", "add", "192.168.77.2/24", "dev", "eth0"])
        .expect("address");
    let out = run(&b, t.client(), "firewall explain 192.168.77.1:631 --json");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let v = json(&out);
    assert!(
        v["warning"].as_str().unwrap_or("").starts_with("is stale"),
        "{v}"
    );
    assert!(v["text"]
        .as_str()
        .unwrap_or("")
        .contains("run firewall start again"));
}

#[test]
fn status_counts_what_was_refused_and_isup_stays_up() {
    assert!(netns_tests::can_run(), "needs root and ip");
    let t = Topology::builder().tunnel(true).build().expect("topology");
    let b = bin();

    let out = run(&b, t.client(), "firewall status --json");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v = json(&out);
    check_status_schema(&v);
    assert_eq!(v["state"], "down");
    let out = run(&b, t.client(), "firewall status");
    assert!(out.stdout.starts_with("firewall: down"), "{}", out.stdout);

    b.start(
        t.client(),
        &[],
        &[IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)],
    )
    .expect("start");
    // Refused: 3 datagrams out of the LAN device, 2 DNS queries to the LAN router from a
    // socket bound to the LAN device (rewritten, then dropped by dns_guard: they would leave
    // in clear), 1 IPv6 DNS query (refused in output).
    let eth0 = SendOpts::device("eth0");
    for _ in 0..3 {
        udp_send(
            t.client(),
            SocketAddr::new(IpAddr::V4(INTERNET_HOST_V4), 9),
            b"x",
            &eth0,
        )
        .expect("send");
    }
    for _ in 0..2 {
        udp_send(
            t.client(),
            SocketAddr::new(IpAddr::V4(ROUTER_LAN_V4), 53),
            b"q",
            &eth0,
        )
        .expect("send");
    }
    // Let through: a query to the LAN router as routed (rewritten, into the tunnel).
    udp_send(
        t.client(),
        SocketAddr::new(IpAddr::V4(ROUTER_LAN_V4), 53),
        b"q",
        &SendOpts::default(),
    )
    .expect("send");
    udp_send(
        t.client(),
        SocketAddr::new(IpAddr::V6(ROUTER_LAN_V6), 53),
        b"q",
        &SendOpts::default(),
    )
    .expect("send");
    // Let through: the tunnel and the LAN count nothing.
    udp_send(
        t.client(),
        SocketAddr::new(IpAddr::V4(INTERNET_HOST_V4), 9),
        b"ok",
        &SendOpts::default(),
    )
    .expect("send");

    let out = run(&b, t.client(), "firewall status --json");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v = json(&out);
    check_status_schema(&v);
    assert_eq!(v["state"], "up");
    assert_eq!(v["profile"], "default");
    assert_eq!(
        v["gateways"],
        serde_json::json!(["198.51.100.1", "2001:db8:2::1"])
    );
    assert_eq!(v["resolver"]["address"], "10.42.0.1");
    assert_eq!(v["resolver"]["routed_via"], "tun0");
    assert_eq!(v["resolver"]["through_tunnel"], true);
    assert_eq!(v["lan"]["mode"], "private");
    assert_eq!(v["lan"]["interfaces"][0]["name"], "eth0");
    assert_eq!(
        v["lan"]["interfaces"][0]["prefixes"],
        serde_json::json!(["192.168.1.0/24", "fd00:1::/64", "fe80::/64"])
    );
    assert_eq!(v["mode"], "connect");
    assert_eq!(v["forwarding"]["filtered"], true);
    assert_eq!(v["forwarding"]["dns_guarded"], true);
    assert!(v["guard"].is_null());
    let counted = |chain: &str, rule: &str| {
        v["refused"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["chain"] == chain && r["rule"] == rule)
            .map(|r| r["packets"].clone())
    };
    assert_eq!(
        counted("dns_guard", "udp dport 53 counter drop"),
        Some(serde_json::json!(2))
    );
    assert_eq!(
        counted("output", "udp dport 53 counter reject"),
        Some(serde_json::json!(1))
    );
    assert_eq!(v["refused"]["by_kind"]["outside_tunnel"]["packets"], 3);
    assert_eq!(v["refused"]["by_kind"]["dns"]["packets"], 3);
    assert_eq!(v["refused"]["by_kind"]["forwarded"]["packets"], 0);
    assert_eq!(v["refused"]["total"]["packets"], 6);

    // The counters moved; the table is still untouched for isup.
    assert_eq!(b.isup(t.client(), &[]).expect("isup"), Some(0));

    let out = run(&b, t.client(), "firewall status");
    assert_eq!(out.code, Some(0));
    for line in [
        "firewall: up, untouched and planned for this network",
        "gateways: 198.51.100.1, 2001:db8:2::1",
        "DNS: rewritten to 10.42.0.1, routed through the tunnel (tun0)",
        "LAN (private): eth0 192.168.1.0/24, fd00:1::/64, fe80::/64",
        "forwarded traffic is filtered like this host's",
        "blocked 6 packets since start: 3 outside the tunnel, 3 DNS",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }

    // The tunnel goes down: DNS will fail, and the status says why.
    t.tunnel_down().expect("tunnel down");
    let v = json(&run(&b, t.client(), "firewall status --json"));
    assert_eq!(v["resolver"]["through_tunnel"], false);
    let out = run(&b, t.client(), "firewall status");
    assert!(
        out.stdout
            .contains("DNS will fail: 10.42.0.1 is routed via eth0, not the tunnel"),
        "{}",
        out.stdout
    );

    // Blocking: no gateway, and status and explain say so.
    t.tunnel_up().expect("tunnel up");
    let out = run(&b, t.client(), "firewall block");
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let v = json(&run(&b, t.client(), "firewall status --json"));
    check_status_schema(&v);
    assert_eq!(v["state"], "up");
    assert_eq!(v["mode"], "block");
    assert_eq!(v["gateways"], serde_json::json!([]));
    let out = run(&b, t.client(), "firewall status");
    assert!(
        out.stdout.contains("blocked: no gateway (firewall block)")
            && !out.stdout.contains("gateways:"),
        "{}",
        out.stdout
    );
    let out = run(&b, t.client(), "firewall explain 198.51.100.1:443");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("and no VPN gateway is open (blocked: no gateway)"),
        "{}",
        out.stdout
    );

    // Without root: one line, exit 1.
    let out = run_unprivileged(&b, t.client(), "firewall status --json");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("bitmask-root: must be run as root"),
        "{}",
        out.stderr
    );
    for bad in ["firewall status --jsn", "firewall status now"] {
        assert_eq!(run(&b, t.client(), bad).code, Some(2), "{bad}");
    }
}
