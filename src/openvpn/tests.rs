//! Validator, start/stop unit tests: every weakness of the original helper (reference
//! sections A6/A7) is a case here. Run as root (file checks switch to uid 65534).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;

const NOBODY: u32 = 65534;

/// A temp directory with files readable by everybody, removed on drop.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bmr-ovpn-ut-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for f in ["ca.pem", "openvpn.pem", "pw"] {
            let p = dir.join(f);
            std::fs::write(&p, b"x\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        Fixture { dir }
    }
    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
    fn env(&self, uid: u32) -> LaunchEnv {
        LaunchEnv {
            uid,
            ipv6_disabled: false,
            group: Some("nogroup".into()),
            openvpn_paths: binary::default_paths(),
            run_dir: self.dir.join("run"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// What today's Go client passes (menshen v5 provider options, then the client's own).
fn go_client_args(fx: &Fixture) -> Vec<String> {
    let mut a = s(&[
        "/usr/sbin/openvpn",
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
        "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
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
        "--verb",
        "3",
        "--tun-ipv6",
        "--remote",
        "198.51.100.1",
        "1194",
        "udp4",
        "--remote",
        "198.51.100.1",
        "443",
        "tcp4",
        "--verb",
        "3",
        "--management-client",
        "--management",
        "127.0.0.1",
        "6061",
    ]);
    a.push(fx.p("pw"));
    for (flag, f) in [
        ("--ca", "ca.pem"),
        ("--cert", "openvpn.pem"),
        ("--key", "openvpn.pem"),
    ] {
        a.push(flag.into());
        a.push(fx.p(f));
    }
    a.push("--persist-tun".into());
    a
}

fn refused(args: &[String], env: &LaunchEnv) -> Error {
    match validate(args, env) {
        Ok(argv) => panic!("accepted {args:?} -> {argv:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(!e.to_string().contains('\n'), "message is one line: {e}");
            e
        }
    }
}

/// Replace the words at `at..` of a valid argument list.
fn with(fx: &Fixture, extra: &[&str]) -> Vec<String> {
    let mut a = s(&[
        "--remote",
        "198.51.100.1",
        "1194",
        "udp",
        "--management",
        "127.0.0.1",
        "6061",
    ]);
    a.push(fx.p("pw"));
    a.extend(s(extra));
    a
}

#[test]
fn go_client_arguments_are_accepted() {
    let fx = Fixture::new("go");
    let args = go_client_args(&fx);
    let argv = validate(&args, &fx.env(NOBODY)).expect("Go client's list");
    assert_eq!(argv[0], OsString::from("/usr/sbin/openvpn"));
    let words: Vec<String> = argv.iter().map(|w| w.to_string_lossy().into()).collect();
    assert_eq!(words[1..4], ["--setenv", "LEAPOPENVPN", "1"]);
    for needed in [
        "--persist-tun",
        "--data-ciphers",
        "--key-direction",
        "--float",
    ] {
        assert!(words.contains(&needed.to_string()), "{needed} dropped");
    }
    assert!(words.windows(2).any(|w| w == ["--group", "nogroup"]));
    // Nothing dropped: every caller word is in the output, in order, after the fixed part.
    assert!(words.ends_with(&args[1..]));
    audit_argv(&argv).expect("audit");
}

#[test]
fn legacy_and_obfs4_argument_lists_are_accepted() {
    let fx = Fixture::new("legacy");
    let mut a = s(&[
        "restart",
        "--auth",
        "SHA1",
        "--cipher",
        "AES-128-CBC",
        "--keepalive",
        "10",
        "30",
        "--tls-cipher",
        "DHE-RSA-AES128-SHA",
        "--tun-ipv6",
        "--socks-proxy",
        "127.0.0.1",
        "8080",
        "--remote",
        "203.0.113.7",
        "443",
        "tcp4",
        "--route",
        "203.0.113.7",
        "255.255.255.255",
        "net_gateway",
        "--pull-filter",
        "ignore",
        "route",
        "--data-ciphers-fallback",
        "AES-256-CBC",
        "--tls-version-min",
        "1.3",
        "or-highest",
        "--remote",
        "2001:db8::1",
        "1194",
        "udp6",
    ]);
    a.extend(["--ca".to_string(), fx.p("ca.pem")]);
    a.extend([
        "--management".to_string(),
        "127.0.0.1".into(),
        "6061".into(),
        fx.p("pw"),
    ]);
    let argv = validate(&a, &fx.env(NOBODY)).expect("legacy list");
    audit_argv(&argv).expect("audit");
}

#[test]
fn ipv6_disabled_adds_pull_filters() {
    let fx = Fixture::new("v6");
    let mut env = fx.env(NOBODY);
    env.ipv6_disabled = true;
    env.group = None;
    let argv = validate(&with(&fx, &[]), &env).expect("ok");
    let words: Vec<String> = argv.iter().map(|w| w.to_string_lossy().into()).collect();
    assert!(!words.contains(&"--group".to_string()));
    assert!(words
        .windows(3)
        .any(|w| w == ["--pull-filter", "ignore", "route-ipv6"]));
    assert!(words
        .windows(3)
        .any(|w| w == ["--pull-filter", "ignore", "ifconfig-ipv6"]));
}

#[test]
fn ca_etc_shadow_is_refused() {
    let fx = Fixture::new("shadow");
    let e = refused(&with(&fx, &["--ca", "/etc/shadow"]), &fx.env(NOBODY));
    assert!(e.to_string().contains("--ca"), "{e}");
    // Through a symlink the user planted:
    let link = fx.p("ca-link.pem");
    std::os::unix::fs::symlink("/etc/shadow", &link).expect("symlink");
    let e = refused(&with(&fx, &["--ca", &link]), &fx.env(NOBODY));
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // Through a directory symlink (intermediate components are walked as the user).
    let dlink = fx.p("etc");
    std::os::unix::fs::symlink("/etc", &dlink).expect("symlink");
    refused(
        &with(&fx, &["--ca", &format!("{dlink}/shadow")]),
        &fx.env(NOBODY),
    );
    // Relative, `..` and openvpn's special words.
    for bad in ["etc/shadow", "/tmp/../etc/shadow", "[inline]", "stdin"] {
        refused(&with(&fx, &["--ca", bad]), &fx.env(NOBODY));
    }
}

#[test]
fn file_in_a_directory_the_user_cannot_enter_is_refused() {
    let fx = Fixture::new("dir");
    let secret = fx.dir.join("secret");
    std::fs::create_dir(&secret).expect("mkdir");
    std::fs::write(secret.join("ca.pem"), b"x").expect("write");
    std::fs::set_permissions(
        secret.join("ca.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let path = secret.join("ca.pem").display().to_string();
    refused(&with(&fx, &["--ca", &path]), &fx.env(NOBODY));
    // Root itself may.
    validate(&with(&fx, &["--ca", &path]), &fx.env(0)).expect("root may read");
    // A 0600 file of root: refused for nobody.
    let own = fx.p("root-only.pem");
    std::fs::write(&own, b"x").expect("write");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    refused(&with(&fx, &["--key", &own]), &fx.env(NOBODY));
}

#[test]
fn non_regular_files_are_refused() {
    let fx = Fixture::new("nonreg");
    for bad in ["/dev/null", "/dev/zero", "/tmp", "/proc/self/environ"] {
        refused(&with(&fx, &["--ca", bad]), &fx.env(NOBODY));
    }
    let fifo = fx.p("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let e = refused(&with(&fx, &["--ca", &fifo]), &fx.env(NOBODY));
    assert!(e.to_string().contains("regular file"), "{e}");
}

#[test]
fn inet_aton_forms_and_junk_are_refused() {
    let fx = Fixture::new("aton");
    let env = fx.env(NOBODY);
    for ip in [
        "127.1",
        "1",
        "4294967295",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "1.2.3.4 junk",
        "host.example",
    ] {
        let e = refused(&s(&["--remote", ip, "1194", "udp"]), &env);
        assert!(e.to_string().contains("--remote"), "{e}");
    }
    // `1.2.3.4 junk` as two words: a wrong count, not a silently dropped word.
    let e = refused(&s(&["--remote", "1.2.3.4", "junk", "1194", "udp"]), &env);
    assert!(matches!(e, Error::WrongCount { .. }), "{e}");
    refused(
        &s(&[
            "--remote",
            "198.51.100.1",
            "1194",
            "udp",
            "--route",
            "127.1",
            "255.255.255.255",
            "net_gateway",
        ]),
        &env,
    );
}

#[test]
fn unicode_digits_and_out_of_range_numbers_are_refused() {
    let fx = Fixture::new("digits");
    let env = fx.env(NOBODY);
    for bad in [
        "\u{0663}",
        "３",
        "١٠",
        "-1",
        "+3",
        "12",
        "99999999999999999999",
    ] {
        refused(&with(&fx, &["--verb", bad]), &env);
    }
    for port in ["\u{0661}\u{0661}\u{0669}\u{0664}", "0", "65536"] {
        refused(&s(&["--remote", "198.51.100.1", port, "udp"]), &env);
    }
}

#[test]
fn management_only_on_loopback_unprivileged_port() {
    let fx = Fixture::new("mgmt");
    let env = fx.env(NOBODY);
    let pw = fx.p("pw");
    for addr in ["0.0.0.0", "198.51.100.1", "::", "127.1"] {
        let e = refused(&with(&fx, &["--management", addr, "6061", &pw]), &env);
        assert!(e.to_string().contains("--management"), "{e}");
    }
    refused(&with(&fx, &["--management", "127.0.0.1", "22", &pw]), &env);
    refused(
        &with(&fx, &["--management", "127.0.0.1", "6061", "/etc/shadow"]),
        &env,
    );
    refused(&with(&fx, &["--management", "127.0.0.1", "6061"]), &env);
    validate(&with(&fx, &["--management", "::1", "6061", &pw]), &env).expect("::1");
    // Unix socket: only in a directory the user owns, never /etc or a root dir.
    refused(
        &with(&fx, &["--management", "/etc/x.sock", "unix", &pw]),
        &env,
    );
    refused(
        &with(&fx, &["--management", &fx.p("m.sock"), "unix", &pw]),
        &env,
    );
    let udir = fx.dir.join("user");
    std::fs::create_dir(&udir).expect("mkdir");
    std::os::unix::fs::chown(&udir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let sock = udir.join("m.sock").display().to_string();
    let argv = validate(&with(&fx, &["--management", &sock, "unix", &pw]), &env).expect("own dir");
    audit_argv(&argv).expect("audit");
    // An existing name is refused.
    std::fs::write(udir.join("taken"), b"").expect("write");
    let taken = udir.join("taken").display().to_string();
    refused(&with(&fx, &["--management", &taken, "unix", &pw]), &env);
}

#[test]
fn log_file_in_tmp_is_created_as_the_user_without_following_links() {
    let fx = Fixture::new("log");
    let env = fx.env(NOBODY);
    // fx.dir is root's 0755 directory: nobody cannot create there.
    let udir = fx.dir.join("tmp");
    std::fs::create_dir(&udir).expect("mkdir");
    std::fs::set_permissions(&udir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    // A symlink planted in the world-writable directory.
    let link = udir.join("leap-vpn.log");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
    let e = refused(&with(&fx, &["--log", &link.display().to_string()]), &env);
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // A file pre-created by someone else.
    let other = udir.join("other.log");
    std::fs::write(&other, b"").expect("write");
    refused(&with(&fx, &["--log", &other.display().to_string()]), &env);
    // A fresh name: accepted; at launch it is created by and for the user.
    let fresh = udir.join("fresh.log").display().to_string();
    let args = with(&fx, &["--log", &fresh]);
    validate(&args, &env).expect("fresh log");
    assert!(!Path::new(&fresh).exists(), "validate must not create");
    let creds = files::UserCreds::lookup(NOBODY);
    let fd = files::create_log(&creds, &fresh).expect("create");
    drop(fd);
    let md = std::fs::symlink_metadata(&fresh).expect("created");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), NOBODY);
    // Root's directory: nobody may not create a log there.
    refused(&with(&fx, &["--log", &fx.p("x.log")]), &env);
    let e = files::create_log(&creds, &fx.p("x.log")).expect_err("no write permission");
    assert!(e.contains("65534"), "{e}");
}

#[test]
fn values_cannot_smuggle_flags() {
    let fx = Fixture::new("smuggle");
    let env = fx.env(NOBODY);
    refused(&with(&fx, &["--verb", "3 --up /bin/sh"]), &env);
    refused(&with(&fx, &["--data-ciphers", "AES-256-GCM --up"]), &env);
    refused(&with(&fx, &["--ca", "--up"]), &env);
    refused(&with(&fx, &["--verb", "-3"]), &env);
    refused(&with(&fx, &["--verb", "3", "--up", "/bin/sh"]), &env);
    refused(&with(&fx, &["--verb", "3\n--up"]), &env);
    refused(&with(&fx, &["--persist-tun", "extra"]), &env);
    refused(&with(&fx, &["--pull-filter", "accept", "route"]), &env);
    refused(
        &with(&fx, &["--pull-filter", "ignore", "dhcp-option"]),
        &env,
    );
}

#[test]
fn unknown_flags_are_refused_with_exit_2() {
    let fx = Fixture::new("unknown");
    let env = fx.env(NOBODY);
    for extra in [
        &["--config", "/etc/openvpn/x.conf"][..],
        &["--up", "/bin/sh"],
        &["--script-security", "3"],
        &["--user", "root"],
        &["--dev", "tap"],
        &["--remote-cert-tls", "client"],
        &["--tls-version-min", "1.0"],
        &["--tls-version-min", "1.1"],
        &["--cipher", "none"],
        &["--auth", "none"],
        &["--route", "0.0.0.0", "0.0.0.0", "net_gateway"],
        &["--verb=3"],
        &["-v"],
    ] {
        let e = refused(&with(&fx, extra), &env);
        assert_eq!(e.exit_code(), 2);
    }
    let e = refused(&with(&fx, &["--config", "/x"]), &env);
    let msg = e.to_string();
    assert!(
        msg.contains("\"--config\"") && msg.contains("--remote"),
        "{msg}"
    );
}

#[test]
fn leading_words_restart_and_binary() {
    let fx = Fixture::new("lead");
    let env = fx.env(NOBODY);
    let base = with(&fx, &[]);
    let mut a = s(&["restart", "/usr/sbin/openvpn"]);
    a.extend(base.clone());
    validate(&a, &env).expect("restart + path");
    for bad in [
        "/tmp/openvpn",
        "/bin/sh",
        "openvpn",
        "/usr/sbin/../sbin/openvpn",
    ] {
        let mut a = vec![bad.to_string()];
        a.extend(base.clone());
        let e = refused(&a, &env);
        assert!(
            matches!(e, Error::BinaryNotAllowed { .. } | Error::NotAFlag { .. }),
            "{e}"
        );
    }
    // `restart` after the path, or two paths: refused, not ignored.
    let mut a = s(&["/usr/sbin/openvpn", "restart"]);
    a.extend(base);
    refused(&a, &env);
    // No --remote at all; no --management.
    refused(&s(&["--verb", "3"]), &env);
    let e = refused(&s(&["--remote", "198.51.100.1", "1194", "udp"]), &env);
    assert!(e.to_string().contains("--management"), "{e}");
    refused(&[], &env);
}

#[test]
fn stop_without_pid_file_is_not_running_and_spares_decoys() {
    let fx = Fixture::new("decoy");
    let mut decoy = Command::new("/bin/sh")
        .args(["-c", "sleep 30", "openvpn", "--setenv", "LEAPOPENVPN", "1"])
        .spawn()
        .expect("decoy");
    let out = stop::stop_in(&fx.dir.join("run"), &binary::default_paths()).expect("stop");
    assert_eq!(out, StopOutcome::NotRunning);
    // A pid file naming the decoy (pid and start time right): left alone, exit 1.
    let run = fx.dir.join("run");
    let dir = pidfile::open_dir(&run, true).expect("dir").expect("dir");
    let (starttime, _) = process::stat(decoy.id()).expect("stat");
    pidfile::write(
        &dir,
        &run,
        pidfile::Record {
            pid: decoy.id(),
            starttime,
        },
    )
    .expect("write");
    let e = stop::stop_in(&run, &binary::default_paths()).expect_err("decoy is not ours");
    assert_eq!(e.exit_code(), 1);
    assert!(
        decoy.try_wait().expect("wait").is_none(),
        "decoy was killed"
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
}

#[test]
fn stop_terminates_the_recorded_openvpn() {
    if !Path::new("/usr/sbin/openvpn").exists() {
        return;
    }
    let fx = Fixture::new("stop");
    let mut decoy = Command::new("/bin/sh")
        .args(["-c", "sleep 30", "openvpn", "--setenv", "LEAPOPENVPN", "1"])
        .spawn()
        .expect("decoy");
    let mut ovpn = Command::new("/usr/sbin/openvpn")
        .args([
            "--setenv",
            "LEAPOPENVPN",
            "1",
            "--dev",
            "null",
            "--lport",
            "0",
            "--verb",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openvpn");
    let run = fx.dir.join("run");
    let dir = pidfile::open_dir(&run, true).expect("dir").expect("dir");
    // Wait for exec to finish so the exe link is openvpn.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (starttime, _) = process::stat(ovpn.id()).expect("stat");
    pidfile::write(
        &dir,
        &run,
        pidfile::Record {
            pid: ovpn.id(),
            starttime,
        },
    )
    .expect("write");
    let out = stop::stop_in(&run, &binary::default_paths()).expect("stop");
    assert_eq!(out, StopOutcome::Stopped { pid: ovpn.id() });
    assert!(ovpn.wait().is_ok());
    assert!(
        decoy.try_wait().expect("wait").is_none(),
        "decoy was killed"
    );
    assert_eq!(
        pidfile::read(&dir, &run).expect("read"),
        None,
        "pid file removed"
    );
    // Stale pid file (process gone): not running, file removed.
    pidfile::write(
        &dir,
        &run,
        pidfile::Record {
            pid: ovpn.id(),
            starttime,
        },
    )
    .expect("write");
    assert_eq!(
        stop::stop_in(&run, &binary::default_paths()).expect("stop"),
        StopOutcome::NotRunning
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
}

#[test]
fn error_messages_are_one_line_and_escape_input() {
    let fx = Fixture::new("msg");
    let e = refused(&with(&fx, &["--verb", "3\u{1b}[31m\nx"]), &fx.env(NOBODY));
    let m = e.to_string();
    assert!(!m.contains('\u{1b}') && !m.contains('\n'), "{m}");
    assert!(
        m.contains("--verb") && m.contains("0-11") || m.contains("range"),
        "{m}"
    );
}
