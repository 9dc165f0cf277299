//! System packages the build and the tests need, installed when missing (as root on Debian).

use std::path::Path;
use std::process::Command;

/// What building the binary and the library needs beyond a Rust toolchain: nothing (they
/// write their netlink messages themselves and link no C library but libc).
pub const BUILD: &[&str] = &[];

/// What the tests need besides the build: pkg-config and libnftnl (the unit test that checks
/// our batches against libnftnl's, and the bench's "before" binary), iproute2 (`ip netns`),
/// nftables (`nft` to compare listings), strace (no process is started), util-linux
/// (`setpriv`), openvpn and openssl (the end-to-end tunnel), iptables (`iptables-nft`: the
/// foreign-table coexistence test, and Docker's and libvirt's rules in the forwarding tests),
/// dnsmasq-base (a desktop's stub resolver and a LAN router's DNS server in the DNS cases).
pub const TEST: &[&str] = &[
    "pkg-config",
    "libnftnl-dev",
    "libmnl-dev",
    "iproute2",
    "nftables",
    "strace",
    "util-linux",
    "openvpn",
    "openssl",
    "iptables",
    "dnsmasq-base",
];

/// What `cargo xtask package` needs besides the build: dpkg-dev (`dpkg-shlibdeps`, which
/// cargo-deb runs to find the shared-library dependencies), binutils (`strip`), gzip (the man
/// page) and lintian.
pub const PACKAGE: &[&str] = &["dpkg-dev", "binutils", "gzip", "lintian"];

/// What the package checks of `cargo xtask test` run on the installed package:
/// libxml2-utils (`xmllint`) and polkitd (polkit's DTD, `/usr/share/polkit-1/policyconfig-1.dtd`)
/// for the polkit policy; systemd (`systemd-analyze verify`, `systemctl --root`) for the units;
/// man-db (`man -l`) for the man page; bash with bash-completion, zsh and fish to load each
/// completion script; nftables to see that installing changes no ruleset.
pub const PACKAGE_TEST: &[&str] = &[
    "libxml2-utils",
    "polkitd",
    "systemd",
    "man-db",
    "bash",
    "bash-completion",
    "zsh",
    "fish",
    "nftables",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether this process runs as root.
pub fn root() -> bool {
    is_root()
}

/// Installs the missing packages of `lists`, or explains how when it cannot.
pub fn ensure(lists: &[&[&str]]) -> Result<(), String> {
    if !Path::new("/etc/debian_version").exists() {
        eprintln!(
            "xtask: not a Debian system; make sure these are installed: {}",
            lists.concat().join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = lists
        .concat()
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "missing system packages: {}; install them with: sudo {cmd}",
            missing.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    crate::run(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
