//! End to end: `bitmask-root openvpn start ...` with the arguments today's Bitmask client
//! passes brings up a real OpenVPN tunnel to a real OpenVPN server (Debian's openvpn, a
//! test PKI generated now), inside the harness's namespaces, with the kill switch up.
//!
//! Shown: the tunnel comes up; the internet host is reached only through it; DNS to any
//! address, and through a dnsmasq stub on 127.0.0.53 that forwards to a dnsmasq on the LAN
//! router, is answered by the VPN-side resolver 10.42.0.1 over the tunnel; when openvpn is
//! killed nothing reaches the internet in clear while the firewall stays up; `openvpn stop`
//! stops a second instance and exits 0, leaving a decoy (`openvpn ... LEAPOPENVPN` in its
//! command line) alone.
//!
//! Needs root, `ip`, `/usr/sbin/openvpn`, `openssl`, `/usr/sbin/dnsmasq` (the DNS part fails
//! without it) and the `bitmask-root` binary (`$BITMASK_ROOT_BIN`, default
//! `target/debug/bitmask-root`); skipped otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns_tests::addr::{
    GATEWAY_V4, INTERNET_HOST_V4, OTHER_RESOLVER_V4, ROUTER_LAN_V4, VPN_RESOLVER,
};
use netns_tests::dnsmasq::Dnsmasq;
use netns_tests::probe::dns::{dns_query, DnsResponder, Transport};
use netns_tests::probe::tap::Tap;
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::probe::udp::{udp_send, UdpListener};
use netns_tests::{BitmaskRoot, Netns, Running, SendOpts, Topology};

const OPENVPN: &str = "/usr/sbin/openvpn";
const MGMT_PASSWORD: &str = "e2e-management-password";
const TUN_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A private temp directory, removed on drop (also on panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("bmr-ovpn-e2e-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).expect("mkdir temp");
        TempDir(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CA, server and client certificates (RSA, as the providers use), valid for two days.
fn make_pki(t: &TempDir) {
    let d = &t.0;
    std::fs::write(
        d.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write ext");
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=bmr e2e CA",
        ],
    );
    for who in ["server", "client"] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
            ],
        );
    }
    // The Go client passes one PEM with certificate and key as both --cert and --key.
    let pem = [
        std::fs::read(d.join("client.crt")).expect("crt"),
        std::fs::read(d.join("client.key")).expect("key"),
    ]
    .concat();
    std::fs::write(d.join("openvpn.pem"), pem).expect("pem");
    std::fs::write(d.join("mgmt-pass"), MGMT_PASSWORD).expect("pw");
    std::fs::create_dir(d.join("run")).expect("run dir");
}

fn start_server(inet: &Netns, t: &TempDir) -> Running {
    let args = [
        "--dev",
        "tun",
        "--topology",
        "subnet",
        "--server",
        "10.42.0.0",
        "255.255.255.0",
        "--local",
        "198.51.100.1",
        "--port",
        "1194",
        "--proto",
        "udp4",
        "--ca",
        &t.path("ca.crt"),
        "--cert",
        &t.path("server.crt"),
        "--key",
        &t.path("server.key"),
        "--dh",
        "none",
        "--data-ciphers",
        "AES-256-GCM",
        "--auth",
        "SHA512",
        "--keepalive",
        "10",
        "30",
        "--push",
        "redirect-gateway def1",
        "--push",
        "dhcp-option DNS 10.42.0.1",
        "--verb",
        "3",
        "--log",
        &t.path("server.log"),
    ];
    inet.spawn_command(OPENVPN, &args)
        .expect("start openvpn server")
}

/// What today's Go client passes after `openvpn start` (pkg/vpn/openvpn.go with the
/// provider's options as menshen hands them over).
fn client_args(t: &TempDir) -> Vec<String> {
    let mut a: Vec<String> = [
        "openvpn",
        "start",
        OPENVPN,
        "--dev",
        "tun",
        "--nobind",
        "--tls-version-min",
        "1.2",
        "--auth",
        "SHA512",
        "--data-ciphers",
        "AES-256-GCM",
        "--tls-cipher",
        "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384:TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
        "--keepalive",
        "10",
        "30",
        "--float",
        "--persist-key",
        "--key-direction",
        "1",
        "--rcvbuf",
        "0",
        "--sndbuf",
        "0",
        "--tun-ipv6",
        "--remote",
        "198.51.100.1",
        "1194",
        "udp4",
        "--verb",
        "3",
        "--management-client",
        "--management",
        "127.0.0.1",
        "6061",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(t.path("mgmt-pass"));
    for (f, p) in [
        ("--ca", "ca.crt"),
        ("--cert", "openvpn.pem"),
        ("--key", "openvpn.pem"),
    ] {
        a.push(f.into());
        a.push(t.path(p));
    }
    a.push("--persist-tun".into());
    a.push("--log".into());
    a.push(t.path("client.log"));
    a
}

/// `ip netns exec NS bitmask-root ARGS` for the `openvpn` commands, with the run directory
/// of this test. The binary refuses to touch the test process's own namespace
/// (`BITMASK_ROOT_REQUIRE_NETNS`). The invoking user is root (so `BITMASK_ROOT_RUN_DIR` is
/// honoured) unless the caller sets `PKEXEC_UID`.
fn bitmask_cmd(bin: &BitmaskRoot, ns: &Netns, t: &TempDir, args: &[String]) -> Command {
    ns.ensure_isolated().expect("isolated namespace");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name()])
        .arg(bin.path())
        .args(args)
        .env(
            netns_tests::bitmask::REQUIRE_NETNS_ENV,
            netns_tests::bitmask::protected_inode()
                .expect("inode of this process's namespace")
                .to_string(),
        )
        .env("BITMASK_ROOT_RUN_DIR", t.path("run"))
        .env_remove("PKEXEC_UID")
        .env_remove("SUDO_UID");
    c
}

/// The Go client's side of `--management-client`: listens on 127.0.0.1:6061 in the client
/// namespace and answers the password prompt, for every connection until stopped.
struct Management {
    stop: Arc<AtomicBool>,
    thread: Option<netns_tests::NsThread<()>>,
}

impl Management {
    fn start(ns: &Netns) -> Management {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns
            .spawn(move || {
                let l = std::net::TcpListener::bind("127.0.0.1:6061").expect("bind 6061");
                l.set_nonblocking(true).expect("nonblocking");
                let _ = tx.send(());
                while !s2.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((conn, _)) => {
                            let s3 = s2.clone();
                            std::thread::spawn(move || serve_management(conn, &s3));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
            .expect("spawn management");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("management bound");
        Management {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_management(conn: std::net::TcpStream, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match r.read_until(b':', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if String::from_utf8_lossy(&buf).contains("ENTER PASSWORD:") {
                    let _ = w.write_all(format!("{MGMT_PASSWORD}\n").as_bytes());
                }
                buf.clear();
            }
            Err(_) => {}
        }
    }
}

impl Drop for Management {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("timed out waiting for {what}");
    false
}

fn has_addr(ns: &Netns, dev: &str, addr: &str) -> bool {
    ns.ip(&["-4", "-o", "addr", "show", "dev", dev])
        .map(|o| o.contains(addr))
        .unwrap_or(false)
}

fn logs(t: &TempDir) -> String {
    let read = |n: &str| std::fs::read_to_string(t.path(n)).unwrap_or_default();
    format!(
        "--- client.log ---\n{}\n--- server.log ---\n{}",
        read("client.log"),
        read("server.log")
    )
}

fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        })
        .unwrap_or(false)
}

fn tunnel_up(client: &Netns, t: &TempDir) {
    let up = wait_until(
        "tun0 with 10.42.0.2 and the VPN routes",
        Duration::from_secs(45),
        || {
            has_addr(client, "tun0", "10.42.0.2/")
                && client
                    .ip(&["-4", "route", "show", "0.0.0.0/1"])
                    .map(|o| o.contains("tun0"))
                    .unwrap_or(false)
        },
    );
    assert!(up, "tunnel did not come up\n{}", logs(t));
}

#[test]
fn openvpn_start_stop_with_real_tunnel_and_kill_switch() {
    if !netns_tests::can_run()
        || !Path::new(OPENVPN).exists()
        || Command::new("openssl").arg("version").output().is_err()
    {
        eprintln!("skipped: needs root, ip, {OPENVPN} and openssl");
        return;
    }
    let bin = BitmaskRoot::from_env().expect("bitmask-root binary");
    let t = TempDir::new("tunnel");
    make_pki(&t);

    let topo = Topology::builder().build().expect("topology");
    let (client, inet) = (topo.client(), topo.internet());

    let _server = start_server(inet, &t);
    assert!(
        wait_until("server tun", Duration::from_secs(20), || has_addr(
            inet,
            "tun0",
            "10.42.0.1/"
        )),
        "server did not come up\n{}",
        logs(&t)
    );
    let vpn_dns = DnsResponder::start(inet, IpAddr::V4(VPN_RESOLVER)).expect("VPN resolver");
    let other_dns = DnsResponder::start(inet, IpAddr::V4(OTHER_RESOLVER_V4)).expect("resolver");
    let udp = UdpListener::start(inet, sa(INTERNET_HOST_V4, 9999)).expect("udp listener");
    let tcp = TcpListener::start(inet, sa(INTERNET_HOST_V4, 8080)).expect("tcp listener");

    // The kill switch, then openvpn through bitmask-root with the Go client's arguments.
    bin.start(client, &[], &[IpAddr::V4(GATEWAY_V4)])
        .expect("firewall start");
    let _mgmt = Management::start(client);
    let args = client_args(&t);
    let mut ovpn = Running::spawn(bitmask_cmd(&bin, client, &t, &args)).expect("openvpn start");
    tunnel_up(client, &t);

    // The pid file names the running openvpn (bitmask-root exec'd it: same pid).
    let pidfile = std::fs::read_to_string(t.path("run/openvpn.pid")).expect("pid file");
    let pid: u32 = pidfile
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert_eq!(
        pid,
        ovpn.pid(),
        "pid file {pidfile:?} names the process we started"
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert_eq!(exe, Path::new(OPENVPN));
    let log_owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::symlink_metadata(t.path("client.log")).expect("client.log created"),
    );
    assert_eq!(
        log_owner, 0,
        "log created for the invoking user (root here)"
    );

    // 1. The internet host is reached, through the tunnel (source is the tunnel address).
    let opts = SendOpts::default();
    udp_send(client, sa(INTERNET_HOST_V4, 9999), b"via-vpn", &opts).expect("send");
    assert_eq!(
        udp.wait_for(1, Duration::from_secs(3)),
        1,
        "not reached\n{}",
        logs(&t)
    );
    for d in udp.datagrams() {
        assert_eq!(
            d.from.ip(),
            IpAddr::V4(TUN_CLIENT),
            "arrived outside the tunnel"
        );
    }
    let c = tcp_connect(client, sa(INTERNET_HOST_V4, 8080), b"hello", &opts).expect("tcp");
    assert_eq!(c, ConnectOutcome::Connected);
    assert!(tcp.wait_for(1, Duration::from_secs(3)) >= 1);
    for a in tcp.accepted() {
        assert_eq!(
            a.from.ip(),
            IpAddr::V4(TUN_CLIENT),
            "TCP outside the tunnel"
        );
    }
    // ... and only through it: forcing the physical interface gets nothing out.
    udp.clear();
    let _ = udp_send(
        client,
        sa(INTERNET_HOST_V4, 9999),
        b"clear",
        &SendOpts::device("eth0"),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        udp.count(),
        0,
        "a datagram reached the internet outside the tunnel"
    );

    // 2. DNS to any address is answered by the VPN resolver.
    for server in [
        IpAddr::V4(OTHER_RESOLVER_V4),
        IpAddr::V4(VPN_RESOLVER),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
    ] {
        for tr in [Transport::Udp, Transport::Tcp] {
            let out = dns_query(client, sa(server, 53), tr, &opts).expect("dns");
            assert_eq!(
                out.answered_by(),
                Some(IpAddr::V4(VPN_RESOLVER)),
                "DNS to {server} over {tr:?}: {out:?}"
            );
        }
    }
    assert_eq!(other_dns.count(), 0, "a query reached the other resolver");
    assert!(vpn_dns.count() >= 6);

    // 2b. A desktop's resolver stack: a real dnsmasq on 127.0.0.53 (as systemd-resolved)
    // forwarding to a real dnsmasq on the LAN router, what DHCP hands out. Lookups through the
    // stub are answered by the VPN resolver, over the real tunnel; the router gets nothing.
    let _router_dns = Dnsmasq::answering_with_own_address(topo.router(), IpAddr::V4(ROUTER_LAN_V4))
        .expect("dnsmasq on the LAN router");
    let stub_addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));
    let _stub = Dnsmasq::stub(client, stub_addr, IpAddr::V4(ROUTER_LAN_V4)).expect("stub dnsmasq");
    let router_tap = Tap::start(topo.router(), "lan0").expect("tap on the router's LAN side");
    let tunnel_queries = |r: &DnsResponder| {
        r.queries()
            .iter()
            .filter(|q| q.from.ip() == IpAddr::V4(TUN_CLIENT))
            .count()
    };
    let before = tunnel_queries(&vpn_dns);
    for tr in [Transport::Udp, Transport::Tcp] {
        let out = dns_query(client, sa(stub_addr, 53), tr, &opts).expect("dns");
        assert_eq!(
            out.answered_by(),
            Some(IpAddr::V4(VPN_RESOLVER)),
            "lookup through the stub over {tr:?}: {out:?}"
        );
    }
    assert!(
        tunnel_queries(&vpn_dns) - before >= 2,
        "the stub's queries did not come through the tunnel"
    );
    std::thread::sleep(Duration::from_millis(500));
    let leaked = router_tap.matching(|p| p.inbound && p.dport == Some(53));
    assert!(
        leaked.is_empty(),
        "port-53 packets reached the LAN router: {leaked:?}"
    );

    // 3. openvpn dies: nothing reaches the internet in clear, the firewall stays up.
    ovpn.kill();
    let _ = ovpn.finish(Duration::from_secs(5));
    assert!(wait_until("tun0 gone", Duration::from_secs(10), || {
        !has_addr(client, "tun0", "10.42.0.2/")
    }));
    udp.clear();
    let tcp_before = tcp.count();
    let _ = udp_send(client, sa(INTERNET_HOST_V4, 9999), b"leak?", &opts);
    let _ = udp_send(
        client,
        sa(INTERNET_HOST_V4, 9999),
        b"leak?",
        &SendOpts::device("eth0"),
    );
    let c = tcp_connect(client, sa(INTERNET_HOST_V4, 8080), b"leak?", &opts).expect("tcp");
    assert_ne!(c, ConnectOutcome::Connected, "TCP connected in clear");
    let q = dns_query(client, sa(OTHER_RESOLVER_V4, 53), Transport::Udp, &opts).expect("dns");
    assert_eq!(
        q.answered_by(),
        None,
        "DNS answered without the tunnel: {q:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(udp.count(), 0, "UDP leaked in clear");
    assert_eq!(tcp.count(), tcp_before, "TCP leaked in clear");
    assert_eq!(other_dns.count(), 0, "DNS leaked in clear");
    assert_eq!(
        bin.isup(client, &[]).expect("isup"),
        Some(0),
        "firewall went down"
    );

    // 4. Start again; `openvpn stop` stops exactly that openvpn and leaves a decoy alone.
    let ovpn2 = Running::spawn(bitmask_cmd(&bin, client, &t, &args)).expect("openvpn start");
    tunnel_up(client, &t);
    let decoy = client
        .spawn_command(
            "/bin/sh",
            &["-c", "sleep 60", "openvpn", "--setenv", "LEAPOPENVPN", "1"],
        )
        .expect("decoy");
    let stop = bitmask_cmd(&bin, client, &t, &["openvpn".into(), "stop".into()]);
    let out = netns_tests::cmd::run(stop, None, Duration::from_secs(20)).expect("stop");
    assert!(out.success(), "openvpn stop: {out:?}");
    let pid2 = ovpn2.pid();
    assert!(
        wait_until("openvpn gone", Duration::from_secs(3), || !proc_alive(pid2)),
        "openvpn still running after stop"
    );
    let done = ovpn2.finish(Duration::from_secs(5)).expect("collect");
    assert!(!done.timed_out);
    assert!(proc_alive(decoy.pid()), "the decoy was killed");
    assert!(
        !Path::new(&t.path("run/openvpn.pid")).exists(),
        "pid file left behind"
    );
    // Stopping again: nothing to stop, still exit 0.
    let stop = bitmask_cmd(&bin, client, &t, &["openvpn".into(), "stop".into()]);
    let out = netns_tests::cmd::run(stop, None, Duration::from_secs(20)).expect("stop");
    assert!(out.success(), "second openvpn stop: {out:?}");
    drop(decoy);
    let _ = bin.stop(client);
}

#[test]
fn openvpn_start_refuses_bad_arguments_with_exit_2() {
    if !netns_tests::can_run() || !Path::new(OPENVPN).exists() {
        eprintln!("skipped: needs root, ip and {OPENVPN}");
        return;
    }
    let bin = BitmaskRoot::from_env().expect("bitmask-root binary");
    let t = TempDir::new("refuse");
    std::fs::create_dir(t.0.join("run")).expect("run dir");
    let topo = Topology::builder().build().expect("topology");
    for bad in [
        &["--remote", "127.1", "1194", "udp"][..],
        &[
            "--remote",
            "198.51.100.1",
            "1194",
            "udp",
            "--ca",
            "/etc/shadow",
            "--config",
            "/x",
        ],
        &["--remote", "198.51.100.1", "1194", "udp", "--up", "/bin/sh"],
        &[
            "--remote",
            "198.51.100.1",
            "1194",
            "udp",
            "--management",
            "0.0.0.0",
            "6061",
            "/etc/hostname",
        ],
        &["/tmp/openvpn", "--remote", "198.51.100.1", "1194", "udp"],
    ] {
        let mut args = vec!["openvpn".to_string(), "start".to_string()];
        args.extend(bad.iter().map(|s| s.to_string()));
        let mut c = bitmask_cmd(&bin, topo.client(), &t, &args);
        // As an unprivileged invoking user, as under pkexec.
        c.env("PKEXEC_UID", "65534");
        let out = netns_tests::cmd::run(c, None, Duration::from_secs(20)).expect("run");
        assert_eq!(out.code, Some(2), "{bad:?}: {out:?}");
        assert!(out.stderr.contains("bitmask-root: "), "{out:?}");
    }
}
