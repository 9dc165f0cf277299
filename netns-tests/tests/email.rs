//! The email firewall (`bitmask-root fw-email start UID | stop | isup`) against the real
//! kernel, only inside namespaces these tests create.
//!
//! Listeners on 127.0.0.1, ::1 and the client's LAN addresses accept tcp on the proxy ports
//! 1984 and 2013 and on another port. Clients run as a chosen uid in a child process
//! (`setpriv --reuid --regid --clear-groups bash -c 'exec 3<>/dev/tcp/HOST/PORT'`, bounded by
//! `timeout`), so the kernel sees a socket owned by that uid, and the listener is root's: the
//! proxies' replies must pass. The LAN router connects to the client's addresses from outside.
//!
//! The binary always runs with `BITMASK_ROOT_REQUIRE_NETNS` set to the inode of this test
//! process's own network namespace, so it refuses to touch that namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use netns_tests::addr::{CLIENT_LAN_V4, CLIENT_LAN_V6};
use netns_tests::bitmask::REQUIRE_NETNS_ENV;
use netns_tests::probe::tcp::{tcp_connect, ConnectOutcome, TcpListener};
use netns_tests::probe::SETTLE;
use netns_tests::{cmd, nft, BitmaskRoot, CmdOutput, Netns, SendOpts, Topology};

/// The mail user of most tests (no such user needs to exist).
const MAIL_UID: u32 = 4242;
/// Another unprivileged user.
const OTHER_UID: u32 = 4343;
/// The user `nobody` of /etc/passwd, to start by name.
const NOBODY: (&str, u32) = ("nobody", 65534);
/// The IMAP and SMTP proxy ports.
const PORTS: [u16; 2] = [1984, 2013];
/// A port the email firewall must leave alone.
const OTHER_PORT: u16 = 1985;
/// How long an expected connection may take to arrive.
const WAIT: Duration = Duration::from_secs(3);
/// The VPN gateway of the coexistence test.
const VPN_GATEWAY: &str = "198.51.100.7";

const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

fn lan_addrs() -> [IpAddr; 2] {
    [IpAddr::V4(CLIENT_LAN_V4), IpAddr::V6(CLIENT_LAN_V6)]
}

/// Whether these tests can run here (root, ip, nft, setpriv).
fn can_run() -> bool {
    let have = |p: &str| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    netns_tests::can_run() && have("nft") && have("setpriv") && have("timeout")
}

macro_rules! skip_unless_runnable {
    () => {
        if !can_run() {
            eprintln!("skipped: needs root, ip, nft, setpriv and timeout");
            return;
        }
    };
}

/// The binary under test, run with the namespace guard set to this process's namespace.
struct Bin {
    bin: BitmaskRoot,
    protect: String,
}

impl Bin {
    fn new() -> Bin {
        let bin = BitmaskRoot::from_env().expect("bitmask-root binary (cargo build first)");
        let ino = std::fs::metadata("/proc/self/ns/net")
            .expect("stat /proc/self/ns/net")
            .ino();
        Bin {
            bin,
            protect: ino.to_string(),
        }
    }

    /// `ip netns exec NS bitmask-root ARGS`, whatever it exits with.
    fn run(&self, ns: &Netns, args: &[&str]) -> CmdOutput {
        let mut c = ns.command(self.bin.path()).expect("isolated namespace");
        c.args(args).env(REQUIRE_NETNS_ENV, &self.protect);
        cmd::run(c, None, Duration::from_secs(30)).expect("run bitmask-root")
    }

    /// Like [`Bin::run`], failing the test unless it exits 0; returns stdout.
    fn ok(&self, ns: &Netns, args: &[&str]) -> String {
        let out = self.run(ns, args);
        assert!(
            out.success(),
            "bitmask-root {} exited {:?}: {}",
            args.join(" "),
            out.code,
            out.stderr.trim()
        );
        out.stdout
    }

    /// The exit code of `ARGS isup` (e.g. `["fw-email"]`), and its one line of output.
    fn isup(&self, ns: &Netns, which: &str) -> (Option<i32>, String) {
        let out = self.run(ns, &[which, "isup"]);
        (out.code, format!("{}{}", out.stdout, out.stderr).trim().to_string())
    }
}

/// A namespace with only loopback up.
fn lone_namespace() -> Netns {
    Netns::create("email").expect("create namespace")
}

/// One recording listener per address and port, inside `ns`.
struct Listeners {
    by_addr: BTreeMap<SocketAddr, TcpListener>,
}

impl Listeners {
    fn start(ns: &Netns, ips: &[IpAddr]) -> Listeners {
        let mut by_addr = BTreeMap::new();
        for ip in ips {
            for port in PORTS.into_iter().chain([OTHER_PORT]) {
                let a = SocketAddr::new(*ip, port);
                by_addr.insert(a, TcpListener::start(ns, a).expect("listener"));
            }
        }
        Listeners { by_addr }
    }

    fn get(&self, a: SocketAddr) -> &TcpListener {
        self.by_addr.get(&a).expect("a listener on that address")
    }

    fn total(&self) -> usize {
        self.by_addr.values().map(TcpListener::count).sum()
    }
}

/// Connects from `ns` to `to` as `uid` in a child process, bounded in time.
fn connect_as(ns: &Netns, uid: u32, to: SocketAddr) -> ConnectOutcome {
    let mut c = ns.command("timeout").expect("isolated namespace");
    c.args(["5", "setpriv"])
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "bash", "-c", r#"exec 3<>"/dev/tcp/$0/$1""#])
        .arg(to.ip().to_string())
        .arg(to.port().to_string());
    let out = cmd::run(c, None, Duration::from_secs(10)).expect("run the client");
    if out.success() {
        ConnectOutcome::Connected
    } else if out.stderr.contains("Connection refused") {
        ConnectOutcome::Refused
    } else if out.timed_out || out.code == Some(124) {
        ConnectOutcome::TimedOut
    } else {
        ConnectOutcome::Other(format!("exit {:?}: {}", out.code, out.stderr.trim()))
    }
}

/// Checks that one attempt had the expected effect, where it landed and what the client saw.
/// Returns a description of the mismatch, if any.
fn expect(
    what: String,
    listener: &TcpListener,
    attempt: impl FnOnce() -> ConnectOutcome,
    allowed: bool,
) -> Option<String> {
    let before = listener.count();
    let outcome = attempt();
    let want = if allowed {
        ConnectOutcome::Connected
    } else {
        ConnectOutcome::Refused
    };
    let arrived = if allowed {
        listener.wait_for(before + 1, WAIT) > before
    } else {
        listener.count() > before
    };
    (outcome != want || arrived != allowed).then(|| {
        format!("{what}: expected {want:?}, got {outcome:?}, arrived at the listener: {arrived}")
    })
}

/// Which uid the email firewall should let in (`None`: it is down, everybody connects).
type Protected = Option<u32>;

fn loopback_allowed(protected: Protected, uid: u32, port: u16) -> bool {
    match protected {
        None => true,
        Some(mail) => port == OTHER_PORT || uid == mail,
    }
}

/// Clients of several uids connect to every listener of `ips` from inside `ns` (through `lo`).
fn check_local(ns: &Netns, l: &Listeners, ips: &[IpAddr], uids: &[u32], p: Protected) -> Vec<String> {
    let mut bad = Vec::new();
    for ip in ips {
        for port in PORTS.into_iter().chain([OTHER_PORT]) {
            let to = SocketAddr::new(*ip, port);
            for &uid in uids {
                let what = format!("uid {uid} -> {to}");
                let allowed = loopback_allowed(p, uid, port);
                bad.extend(expect(what, l.get(to), || connect_as(ns, uid, to), allowed));
            }
        }
    }
    bad
}

/// The LAN router connects to the client's LAN addresses.
fn check_from_lan(t: &Topology, l: &Listeners, p: Protected) -> Vec<String> {
    let opts = SendOpts {
        timeout: Some(WAIT),
        ..Default::default()
    };
    let mut bad = Vec::new();
    for ip in lan_addrs() {
        for port in PORTS.into_iter().chain([OTHER_PORT]) {
            let to = SocketAddr::new(ip, port);
            let allowed = p.is_none() || port == OTHER_PORT;
            let attempt = || tcp_connect(t.router(), to, b"", &opts).expect("connect from the LAN");
            bad.extend(expect(format!("LAN -> {to}"), l.get(to), attempt, allowed));
        }
    }
    bad
}

fn assert_none(bad: Vec<String>, when: &str) {
    assert!(bad.is_empty(), "{when}:\n  {}", bad.join("\n  "));
}

/// `nft list table inet NAME` in `ns`, `None` when absent.
fn table(ns: &Netns, name: &str) -> Option<String> {
    nft::table(ns, "inet", name).expect("nft list table")
}

#[test]
fn only_the_mail_user_reaches_the_proxies_and_nobody_from_outside() {
    skip_unless_runnable!();
    let bin = Bin::new();
    let t = Topology::builder().build().expect("topology");
    let client = t.client();
    let all: Vec<IpAddr> = LOOPBACK.into_iter().chain(lan_addrs()).collect();
    let l = Listeners::start(client, &all);
    let uids = [MAIL_UID, OTHER_UID, 0];

    let mut bad = check_local(client, &l, &all, &uids, None);
    bad.extend(check_from_lan(&t, &l, None));
    assert_none(bad, "before fw-email start, everything must connect");

    let uid = MAIL_UID.to_string();
    let out = bin.ok(client, &["fw-email", "start", &uid]);
    assert!(out.contains("uid 4242"), "{out}");
    let planned = bin.ok(client, &["--dry-run", "fw-email", "start", &uid]);
    assert_eq!(table(client, "bitmask_email").as_deref(), Some(planned.as_str()));
    let (code, msg) = bin.isup(client, "fw-email");
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains("uid 4242"), "{msg}");

    let mut bad = check_local(client, &l, &all, &uids, Some(MAIL_UID));
    bad.extend(check_from_lan(&t, &l, Some(MAIL_UID)));
    assert_none(bad, "with fw-email up for uid 4242");

    let out = bin.ok(client, &["fw-email", "stop"]);
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(table(client, "bitmask_email"), None);
    let (code, msg) = bin.isup(client, "fw-email");
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("down"), "{msg}");
    let mut bad = check_local(client, &l, &all, &uids, None);
    bad.extend(check_from_lan(&t, &l, None));
    assert_none(bad, "after fw-email stop, everything must connect");

    let out = bin.ok(client, &["fw-email", "stop"]);
    assert!(out.contains("was not running"), "{out}");
    std::thread::sleep(SETTLE);
    let expected: usize = 3 * (2 * 4 * 3 * 3) // three open rounds: 4 addrs x 3 ports x 3 uids + 2x3 LAN
        - 3 * 2 * 4 // wait: replaced below
        + 0;
    let _ = expected;
}
