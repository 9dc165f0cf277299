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

use netns_tests::addr::{CLIENT_LAN_V4, CLIENT_LAN_V6, ROUTER_LAN_V4, ROUTER_LAN_V6};
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

/// These tests never skip: without what they need they fail, loudly, with what to do.
macro_rules! require_runnable {
    () => {
        assert!(
            can_run(),
            "the email firewall tests need root, ip, nft, setpriv and timeout: \
             run them as root through `cargo xtask test`, which installs what is missing"
        );
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
        (
            out.code,
            format!("{}{}", out.stdout, out.stderr).trim().to_string(),
        )
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

    fn clear(&self) {
        self.by_addr.values().for_each(TcpListener::clear);
    }
}

/// Connects from `ns` to `to` as `uid` in a child process, bounded in time.
fn connect_as(ns: &Netns, uid: u32, to: SocketAddr) -> ConnectOutcome {
    let mut c = ns.command("timeout").expect("isolated namespace");
    c.args(["5", "setpriv"])
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args([
            "--clear-groups",
            "bash",
            "-c",
            r#"exec 3<>"/dev/tcp/$0/$1""#,
        ])
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

/// The results of a round of connection attempts: mismatches, and how many connections
/// should have arrived.
#[derive(Default)]
struct Round {
    bad: Vec<String>,
    arrivals: usize,
}

impl Round {
    /// Makes one attempt and checks where it landed and what the client saw.
    fn expect(
        &mut self,
        what: String,
        listener: &TcpListener,
        attempt: impl FnOnce() -> ConnectOutcome,
        allowed: bool,
    ) {
        let before = listener.count();
        let outcome = attempt();
        let want = if allowed {
            self.arrivals += 1;
            ConnectOutcome::Connected
        } else {
            ConnectOutcome::Refused
        };
        let arrived = if allowed {
            listener.wait_for(before + 1, WAIT) > before
        } else {
            listener.count() > before
        };
        if outcome != want || arrived != allowed {
            self.bad.push(format!(
                "{what}: expected {want:?}, got {outcome:?}, arrived at the listener: {arrived}"
            ));
        }
    }

    /// Clients of several uids in `ns` connect to every listener of `ips`: the client's own
    /// addresses (reached through `lo`, the LAN addresses too), or another host's (with
    /// `p = None`, everything must connect).
    fn local(&mut self, ns: &Netns, l: &Listeners, ips: &[IpAddr], uids: &[u32], p: Protected) {
        for ip in ips {
            for port in PORTS.into_iter().chain([OTHER_PORT]) {
                let to = SocketAddr::new(*ip, port);
                for &uid in uids {
                    let allowed = match p {
                        None => true,
                        Some(mail) => port == OTHER_PORT || uid == mail,
                    };
                    let what = format!("uid {uid} -> {to}");
                    self.expect(what, l.get(to), || connect_as(ns, uid, to), allowed);
                }
            }
        }
    }

    /// The LAN router connects to the client's LAN addresses.
    fn lan(&mut self, t: &Topology, l: &Listeners, p: Protected) {
        let opts = SendOpts {
            timeout: Some(WAIT),
            ..Default::default()
        };
        for ip in lan_addrs() {
            for port in PORTS.into_iter().chain([OTHER_PORT]) {
                let to = SocketAddr::new(ip, port);
                let allowed = p.is_none() || port == OTHER_PORT;
                let attempt = || tcp_connect(t.router(), to, b"", &opts).expect("connect");
                self.expect(format!("LAN -> {to}"), l.get(to), attempt, allowed);
            }
        }
    }

    /// Fails the test on any mismatch, and unless exactly the allowed connections arrived
    /// since `l` was last cleared (refused ones must not arrive late either).
    fn check(self, l: &Listeners, when: &str) {
        assert!(self.bad.is_empty(), "{when}:\n  {}", self.bad.join("\n  "));
        std::thread::sleep(SETTLE);
        assert_eq!(l.total(), self.arrivals, "{when}: connections that arrived");
        l.clear();
    }
}

/// Which uid the email firewall should let in (`None`: it is down, everybody connects).
type Protected = Option<u32>;

/// `nft list table inet NAME` in `ns`, `None` when absent.
fn table(ns: &Netns, name: &str) -> Option<String> {
    nft::table(ns, "inet", name).expect("nft list table")
}

#[test]
fn only_the_mail_user_reaches_the_proxies_and_nobody_from_outside() {
    require_runnable!();
    let bin = Bin::new();
    let t = Topology::builder().build().expect("topology");
    let client = t.client();
    let all: Vec<IpAddr> = LOOPBACK.into_iter().chain(lan_addrs()).collect();
    let l = Listeners::start(client, &all);
    let uids = [MAIL_UID, OTHER_UID, 0];
    let round = |p: Protected, when: &str| {
        let mut r = Round::default();
        r.local(client, &l, &all, &uids, p);
        r.lan(&t, &l, p);
        r.check(&l, when);
    };

    round(None, "before fw-email start, everything connects");

    let uid = MAIL_UID.to_string();
    let out = bin.ok(client, &["fw-email", "start", &uid]);
    assert!(out.contains("uid 4242"), "{out}");
    let planned = bin.ok(client, &["--dry-run", "fw-email", "start", &uid]);
    assert_eq!(
        table(client, "bitmask_email").as_deref(),
        Some(planned.as_str())
    );
    let (code, msg) = bin.isup(client, "fw-email");
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains("uid 4242"), "{msg}");

    round(Some(MAIL_UID), "with fw-email up for uid 4242");

    // Only lo is guarded: any user still reaches ports 1984 and 2013 of other hosts.
    let router_ips = [IpAddr::V4(ROUTER_LAN_V4), IpAddr::V6(ROUTER_LAN_V6)];
    let remote = Listeners::start(t.router(), &router_ips);
    let mut r = Round::default();
    r.local(client, &remote, &router_ips, &[OTHER_UID, 0], None);
    r.check(&remote, "to the LAN router's ports with fw-email up");
    drop(remote);

    let out = bin.ok(client, &["fw-email", "stop"]);
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(table(client, "bitmask_email"), None);
    let (code, msg) = bin.isup(client, "fw-email");
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("is down"), "{msg}");

    round(None, "after fw-email stop, everything connects again");

    let out = bin.ok(client, &["fw-email", "stop"]);
    assert!(out.contains("was not running"), "{out}");
}

#[test]
fn a_new_start_replaces_the_running_email_firewall_at_once() {
    require_runnable!();
    let bin = Bin::new();
    let ns = lone_namespace();
    let l = Listeners::start(&ns, &LOOPBACK);
    let uids = [MAIL_UID, OTHER_UID, NOBODY.1, 0];
    let check = |p: Protected, when: &str| {
        let mut r = Round::default();
        r.local(&ns, &l, &LOOPBACK, &uids, p);
        r.check(&l, when);
    };

    bin.ok(&ns, &["fw-email", "start", &MAIL_UID.to_string()]);
    check(Some(MAIL_UID), "started for 4242");

    // "restart" is accepted and ignored, as the original did.
    let out = bin.ok(
        &ns,
        &["fw-email", "start", "restart", &OTHER_UID.to_string()],
    );
    assert!(out.contains("uid 4343"), "{out}");
    check(Some(OTHER_UID), "replaced by 4343");

    let out = bin.ok(&ns, &["fw-email", "start", NOBODY.0]);
    assert!(
        out.contains("uid 65534"),
        "a name is resolved from /etc/passwd: {out}"
    );
    let (code, msg) = bin.isup(&ns, "fw-email");
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains("uid 65534"), "{msg}");
    check(Some(NOBODY.1), "replaced by nobody");

    bin.ok(&ns, &["fw-email", "start", "0"]);
    check(Some(0), "uid 0: root only");

    bin.ok(&ns, &["fw-email", "stop"]);
    check(None, "stopped");
}

#[test]
fn invalid_uids_change_nothing() {
    require_runnable!();
    let bin = Bin::new();
    let ns = lone_namespace();
    let bad = [
        "",
        "1000x",
        "../",
        "..",
        "bmr-no-such-user",
        "4294967295",
        "4294967296",
        "99999999999999999999",
        "-1",
        "01000",
        " 1000",
        "1000 ",
        "root:x",
        "root\n",
        "$(id)",
    ];
    for state in ["down", "up"] {
        if state == "up" {
            bin.ok(&ns, &["fw-email", "start", &MAIL_UID.to_string()]);
        }
        let before = nft::ruleset(&ns).expect("nft list ruleset");
        for word in bad {
            for dry in [false, true] {
                let args: Vec<&str> = if dry {
                    vec!["--dry-run", "fw-email", "start", word]
                } else {
                    vec!["fw-email", "start", word]
                };
                let out = bin.run(&ns, &args);
                assert_eq!(out.code, Some(2), "{state}: {args:?}: {}", out.stderr);
                assert_eq!(out.stdout, "", "{state}: {args:?}");
                assert_eq!(
                    out.stderr.lines().count(),
                    1,
                    "{state}: {args:?}: {}",
                    out.stderr
                );
                assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
            }
            let after = nft::ruleset(&ns).expect("nft list ruleset");
            assert_eq!(
                after, before,
                "{state}: fw-email start {word:?} changed the ruleset"
            );
        }
        let (code, msg) = bin.isup(&ns, "fw-email");
        if state == "up" {
            assert_eq!(code, Some(0), "{msg}");
            assert!(msg.contains("uid 4242"), "{msg}");
        } else {
            assert_eq!(code, Some(1), "{msg}");
        }
    }
    bin.ok(&ns, &["fw-email", "stop"]);
}

#[test]
fn isup_says_why_when_the_table_was_changed() {
    require_runnable!();
    let bin = Bin::new();
    let ns = lone_namespace();
    bin.ok(&ns, &["fw-email", "start", &MAIL_UID.to_string()]);
    nft::nft(&ns, &["flush", "chain", "inet", "bitmask_email", "output"]).expect("flush");
    let (code, msg) = bin.isup(&ns, "fw-email");
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("changed by another program"), "{msg}");
    assert!(msg.contains("fw-email start 4242"), "{msg}");

    bin.ok(&ns, &["fw-email", "start", &MAIL_UID.to_string()]);
    assert_eq!(bin.isup(&ns, "fw-email").0, Some(0), "a start restores it");

    // A table of that name that is not ours is not "up", and start replaces it.
    bin.ok(&ns, &["fw-email", "stop"]);
    nft::nft(&ns, &["add", "table", "inet", "bitmask_email"]).expect("add table");
    let (code, msg) = bin.isup(&ns, "fw-email");
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("comment"), "{msg}");
    bin.ok(&ns, &["fw-email", "start", &MAIL_UID.to_string()]);
    assert_eq!(bin.isup(&ns, "fw-email").0, Some(0));
    bin.ok(&ns, &["fw-email", "stop"]);
}

/// One step of the coexistence test.
#[derive(Debug, Clone, Copy)]
enum Step {
    VpnStart,
    VpnStop,
    EmailStart(u32),
    EmailStop,
}

/// Which firewalls are up: (VPN, email uid).
type Up = (bool, Option<u32>);

impl Step {
    fn args(self) -> Vec<String> {
        let words: &[&str] = match self {
            Step::VpnStart => &["firewall", "start", VPN_GATEWAY],
            Step::VpnStop => &["firewall", "stop"],
            Step::EmailStart(_) => &["fw-email", "start"],
            Step::EmailStop => &["fw-email", "stop"],
        };
        let mut v: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if let Step::EmailStart(uid) = self {
            v.push(uid.to_string());
        }
        v
    }

    /// The state after this step, and which table it must leave byte for byte as it was.
    fn apply(self, (vpn, email): Up) -> (Up, &'static str) {
        match self {
            Step::VpnStart => ((true, email), "bitmask_email"),
            Step::VpnStop => ((false, email), "bitmask_email"),
            Step::EmailStart(uid) => ((vpn, Some(uid)), "bitmask"),
            Step::EmailStop => ((vpn, None), "bitmask"),
        }
    }
}

#[test]
fn vpn_and_email_firewalls_leave_each_other_intact_in_every_order() {
    require_runnable!();
    let bin = Bin::new();
    let t = Topology::builder().build().expect("topology");
    let client = t.client();
    let l = Listeners::start(client, &LOOPBACK);
    use Step::*;
    let orders: [&[Step]; 4] = [
        &[VpnStart, EmailStart(MAIL_UID), EmailStop, VpnStop],
        &[VpnStart, EmailStart(MAIL_UID), VpnStop, EmailStop],
        &[EmailStart(MAIL_UID), VpnStart, VpnStop, EmailStop],
        &[
            EmailStart(MAIL_UID),
            VpnStart,
            EmailStart(OTHER_UID),
            EmailStop,
            VpnStop,
        ],
    ];
    for order in orders {
        let mut up: Up = (false, None);
        for &step in order {
            let (next, untouched) = step.apply(up);
            let before = table(client, untouched);
            let args = step.args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bin.ok(client, &args);
            assert_eq!(
                table(client, untouched),
                before,
                "{order:?}: {step:?} changed {untouched}"
            );
            up = next;
            let (code, msg) = bin.isup(client, "firewall");
            assert_eq!(
                code == Some(0),
                up.0,
                "{order:?} after {step:?}: firewall isup: {msg}"
            );
            let (code, msg) = bin.isup(client, "fw-email");
            assert_eq!(
                code == Some(0),
                up.1.is_some(),
                "{order:?} after {step:?}: fw-email isup: {msg}"
            );
            if let (true, Some(uid)) = up {
                assert!(msg.contains(&format!("uid {uid}")), "{msg}");
                let mut r = Round::default();
                r.local(client, &l, &LOOPBACK, &[MAIL_UID, OTHER_UID, 0], up.1);
                r.check(&l, &format!("{order:?} after {step:?}: both firewalls up"));
            }
        }
        assert_eq!(
            nft::tables(client).expect("nft list tables"),
            Vec::<String>::new()
        );
    }
}
