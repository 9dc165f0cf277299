//! The package checks of `cargo xtask test`: build the `.deb`, lint it, install it into this
//! machine with `dpkg -i`, check what a user and the system get, and purge it again (also when
//! a check fails). CI runs as root on a throwaway machine; on a developer's machine the task
//! refuses to run over an installed bitmask-root package.
//!
//! Every tool is a Debian package listed in `deps::PACKAGE_TEST`; a missing one fails loudly.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const PKG: &str = "bitmask-root";
const BIN: &str = "/usr/sbin/bitmask-root";
const POLICY: &str = "/usr/share/polkit-1/actions/se.leap.bitmask-root.policy";
const POLKIT_DTD: &str = "/usr/share/polkit-1/policyconfig-1.dtd";
const UNITS: &[&str] = &["bitmask-root-block.service", "bitmask-root-guard.service"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const MAN: &str = "/usr/share/man/man8/bitmask-root.8.gz";
const BASH: &str = "/usr/share/bash-completion/completions/bitmask-root";
const ZSH: &str = "/usr/share/zsh/vendor-completions/_bitmask-root";
const FISH: &str = "/usr/share/fish/vendor_completions.d/bitmask-root.fish";
/// The most a unit's sandbox may be exposed, by `systemd-analyze security` (0 best, 10 worst).
const MAX_EXPOSURE: &str = "2.5";

/// Runs a command and returns its output, or says which tool could not be run.
fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output()
        .map_err(|e| format!("could not run {cmd:?}: {e} (is its Debian package installed?)"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn must(cmd: &mut Command) -> Result<String, String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PKG])
        .output()
        .map(|o| text(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Purges the package when dropped, on every exit path.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let status = Command::new("dpkg").args(["--purge", PKG]).status();
        match status {
            Ok(s) if s.success() => eprintln!("xtask: {PKG} purged"),
            other => eprintln!("xtask: dpkg --purge {PKG} failed ({other:?}): purge it by hand"),
        }
    }
}

/// One named check; failures are collected so one run shows them all.
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(note) => println!(
                "package check: {name}: ok{}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                }
            ),
            Err(e) => {
                println!("package check: {name}: FAILED: {e}");
                self.failed.push(name.to_string());
            }
        }
    }
}

fn ensure(ok: bool, msg: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg.into())
    }
}

/// The network namespace inode of this process: the binary refuses to change it.
fn own_netns() -> Result<String, String> {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino().to_string())
        .map_err(|e| format!("/proc/self/ns/net: {e}"))
}

fn bin() -> Result<Command, String> {
    let mut c = Command::new(BIN);
    c.env("BITMASK_ROOT_REQUIRE_NETNS", own_netns()?);
    Ok(c)
}

/// Processes running the installed binary.
fn running_helpers() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Ok(exe) = std::fs::read_link(e.path().join("exe")) {
                if exe == Path::new(BIN) {
                    found.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    found
}

/// Our table in this machine's own ruleset (read only).
fn own_table_present() -> Result<bool, String> {
    let tables = must(Command::new("nft").args(["list", "tables"]))?;
    Ok(tables
        .lines()
        .any(|l| l.trim() == "table inet bitmask" || l.trim() == "table inet bitmask_email"))
}

fn file_mode(path: &str, mode: u32) -> Result<String, String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
    ensure(m.is_file(), format!("{path} is not a regular file"))?;
    let got = m.permissions().mode() & 0o7777;
    ensure(
        got == mode && m.uid() == 0 && m.gid() == 0,
        format!(
            "{path}: mode {got:o} owner {}:{}, want {mode:o} root:root",
            m.uid(),
            m.gid()
        ),
    )?;
    Ok(String::new())
}

fn check_files() -> Result<String, String> {
    file_mode(BIN, 0o755)?;
    for f in [POLICY, MAN, BASH, ZSH, FISH] {
        file_mode(f, 0o644)?;
    }
    for u in UNITS {
        file_mode(&format!("{UNIT_DIR}/{u}"), 0o644)?;
    }
    // Runs against the shared libraries it depends on (libnftnl, libmnl): nothing missing.
    let ldd = must(Command::new("ldd").arg(BIN))?;
    ensure(!ldd.contains("not found"), format!("ldd {BIN}:\n{ldd}"))?;
    Ok("owners and modes".into())
}

fn check_not_enabled_nothing_started(had_table: bool) -> Result<String, String> {
    // No maintainer script: nothing can enable or start a unit at install time.
    let scripts: Vec<&str> = ["preinst", "postinst", "prerm", "postrm"]
        .into_iter()
        .filter(|s| Path::new(&format!("/var/lib/dpkg/info/{PKG}.{s}")).exists())
        .collect();
    ensure(
        scripts.is_empty(),
        format!("maintainer scripts installed: {scripts:?}"),
    )?;
    for u in UNITS {
        let out = output(Command::new("systemctl").args(["--root=/", "is-enabled", u]))?;
        let state = text(&out.stdout).trim().to_string();
        ensure(
            state == "disabled",
            format!("{u} is {state:?}, want \"disabled\""),
        )?;
    }
    let links = must(Command::new("find").args(["/etc/systemd", "-name", "bitmask-root*"]))?;
    ensure(
        links.trim().is_empty(),
        format!("unit links in /etc/systemd:\n{links}"),
    )?;
    let procs = running_helpers();
    ensure(
        procs.is_empty(),
        format!("{BIN} is running: pids {procs:?}"),
    )?;
    ensure(
        own_table_present()? == had_table,
        "the install changed this machine's nftables ruleset",
    )?;
    Ok("disabled, no maintainer script, no process, ruleset unchanged".into())
}

fn check_version() -> Result<String, String> {
    let v = must(bin()?.arg("--version"))?;
    ensure(
        v.starts_with("19 (bitmask-root-rs "),
        format!("--version printed {v:?}"),
    )?;
    Ok(v.trim().to_string())
}

fn check_dry_run_block() -> Result<String, String> {
    let out = must(bin()?.args(["--dry-run", "firewall", "block"]))?;
    ensure(
        out.starts_with("table inet bitmask {"),
        format!("--dry-run firewall block printed:\n{out}"),
    )?;
    ensure(
        out.contains("; mode block;"),
        "the table comment does not record the block",
    )?;
    ensure(
        !out.contains("@gateways"),
        "a blocking plan must open no gateway",
    )?;
    ensure(
        out.contains("reject with tcp reset")
            && out.contains("\t\tcounter packets 0 bytes 0 reject\n"),
        "the plan lacks its final rejects",
    )?;
    let refused = output(bin()?.args(["--dry-run", "firewall", "block", "198.51.100.7"]))?;
    ensure(
        refused.status.code() == Some(2) && text(&refused.stderr).starts_with("bitmask-root: "),
        format!(
            "firewall block GATEWAY exited {:?}: {}",
            refused.status.code(),
            text(&refused.stderr)
        ),
    )?;
    Ok(format!("{} lines", out.lines().count()))
}

fn check_polkit() -> Result<String, String> {
    ensure(
        Path::new(POLKIT_DTD).is_file(),
        format!("{POLKIT_DTD} is missing (Debian package polkitd)"),
    )?;
    // The policy's DOCTYPE names polkit's DTD by URL: a catalog maps it to the local file, so
    // xmllint needs no network and prints nothing unless the policy is invalid.
    let dir = std::env::temp_dir().join(format!("bmr-xtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let catalog = dir.join("catalog.xml");
    std::fs::write(
        &catalog,
        format!(
            "<?xml version=\"1.0\"?>\n<catalog xmlns=\"urn:oasis:names:tc:entity:xmlns:xml:catalog\">\n  <system systemId=\"http://www.freedesktop.org/software/polkit/policyconfig-1.dtd\" uri=\"file://{POLKIT_DTD}\"/>\n</catalog>\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = output(
        Command::new("xmllint")
            .env("XML_CATALOG_FILES", &catalog)
            .args([
                "--nonet",
                "--noout",
                "--valid",
                "--dtdvalid",
                POLKIT_DTD,
                POLICY,
            ]),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    ensure(
        out.status.success() && out.stderr.is_empty(),
        format!(
            "xmllint: {POLICY} is not valid against {POLKIT_DTD}:\n{}",
            text(&out.stderr)
        ),
    )?;
    let xpath = |expr: &str| -> Result<String, String> {
        must(Command::new("xmllint").args(["--nonet", "--xpath", expr, POLICY]))
            .map(|s| s.trim().to_string())
    };
    let action = "/policyconfig/action[@id='se.leap.bitmask-root.pkexec']";
    for (what, want) in [
        ("defaults/allow_any", "no"),
        ("defaults/allow_inactive", "no"),
        ("defaults/allow_active", "auth_admin_keep"),
        ("annotate[@key='org.freedesktop.policykit.exec.path']", BIN),
    ] {
        let got = xpath(&format!("string({action}/{what})"))?;
        ensure(got == want, format!("{what} is {got:?}, want {want:?}"))?;
    }
    let actions = xpath("count(/policyconfig/action)")?;
    ensure(actions == "1", format!("{actions} actions, want 1"))?;
    Ok("valid against polkit's DTD; any/inactive no, active auth_admin_keep".into())
}

fn check_units() -> Result<String, String> {
    let paths: Vec<String> = UNITS.iter().map(|u| format!("{UNIT_DIR}/{u}")).collect();
    let out = output(Command::new("systemd-analyze").arg("verify").args(&paths))?;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    ensure(
        out.status.success() && !all.contains("bitmask-root"),
        format!("systemd-analyze verify ({}):\n{all}", out.status),
    )?;
    let mut notes = Vec::new();
    for p in &paths {
        let out = output(Command::new("systemd-analyze").args([
            "security",
            "--offline=yes",
            &format!("--threshold={}", MAX_EXPOSURE.replace('.', "")),
            "--no-pager",
            p,
        ]))?;
        let report = text(&out.stdout);
        let overall = report
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("")
            .trim()
            .to_string();
        ensure(
            out.status.success(),
            format!(
                "{p}: sandbox exposure above {MAX_EXPOSURE} ({overall}); systemd-analyze security --offline=yes {p} says why\n{}",
                text(&out.stderr)
            ),
        )?;
        notes.push(format!("{}: {overall}", p.rsplit('/').next().unwrap_or(p)));
    }
    // The boot unit runs before any network is configured.
    let block = std::fs::read_to_string(&paths[0]).map_err(|e| e.to_string())?;
    for line in [
        "DefaultDependencies=no",
        "Before=network-pre.target shutdown.target",
        "Wants=network-pre.target",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "WantedBy=sysinit.target",
    ] {
        ensure(
            block.lines().any(|l| l.trim() == line),
            format!("{} lacks {line}", paths[0]),
        )?;
    }
    Ok(notes.join("; "))
}

fn check_man() -> Result<String, String> {
    let out = output(
        Command::new("man")
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "")
            .args(["--warnings", "-E", "UTF-8", "-l", MAN]),
    )?;
    let page = text(&out.stdout);
    ensure(
        out.status.success() && out.stderr.is_empty(),
        format!("man -l {MAN} ({}):\n{}", out.status, text(&out.stderr)),
    )?;
    let plain: String = page
        .split('\u{8}')
        .enumerate()
        .map(|(i, s)| if i == 0 { s } else { s.get(1..).unwrap_or("") })
        .collect();
    for want in [
        "BITMASK-ROOT(8)",
        "NAME",
        "SYNOPSIS",
        "firewall block",
        "--lan",
        "EXIT STATUS",
    ] {
        ensure(
            plain.contains(want),
            format!("the rendered page lacks {want:?}"),
        )?;
    }
    Ok(format!("{} lines", plain.lines().count()))
}

fn check_bash() -> Result<String, String> {
    // bash-completion's loader finds the script where the package put it.
    let script = r#"
source /usr/share/bash-completion/bash_completion || exit 3
_completion_loader bitmask-root
complete -p bitmask-root || exit 4
try() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _bitmask_root; echo "${COMPREPLY[*]}"; }
try bitmask-root ''
try bitmask-root --lan ''
try bitmask-root --tcp firewall ''
"#;
    let out = must(Command::new("bash").args(["--norc", "--noprofile", "-c", script]))?;
    let lines: Vec<&str> = out.lines().collect();
    ensure(
        lines
            .first()
            .is_some_and(|l| l.contains("-F _bitmask_root")),
        format!("bash did not load the completion: {out}"),
    )?;
    ensure(
        lines
            .get(1)
            .is_some_and(|l| l.split(' ').any(|w| w == "firewall"))
            && lines.get(2) == Some(&"private on-link off")
            && lines
                .get(3)
                .is_some_and(|l| l.split(' ').any(|w| w == "block")),
        format!("bash completions: {out}"),
    )?;
    Ok("loaded by bash-completion; completes commands, --lan values, firewall block".into())
}

fn check_zsh() -> Result<String, String> {
    // compinit finds it on zsh's default fpath (vendor-completions) by its #compdef line.
    let script = "autoload -Uz compinit && compinit -u -D || exit 3
[[ $_comps[bitmask-root] == _bitmask-root ]] || { print -r -- \"not registered: $_comps[bitmask-root]\"; exit 4; }
autoload +X _bitmask-root || exit 5
whence -w _bitmask-root";
    let out = must(Command::new("zsh").args(["-f", "-c", script]))?;
    ensure(
        out.trim() == "_bitmask-root: function",
        format!("zsh: {out}"),
    )?;
    Ok("registered by compinit from the default fpath, function loads".into())
}

fn check_fish() -> Result<String, String> {
    // fish loads it from its vendor directory when completing; a throwaway HOME keeps any
    // user configuration out.
    let home = std::env::temp_dir().join(format!("bmr-fish-{}", std::process::id()));
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let out = must(
        Command::new("fish")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .args([
                "-c",
                "complete -C'bitmask-root firewall '; echo ---; complete -C'bitmask-root --lan '",
            ]),
    );
    let _ = std::fs::remove_dir_all(&home);
    let out = out?;
    let (subs, lan) = out.split_once("---").unwrap_or((&out, ""));
    let words = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    };
    let subs = words(subs);
    let lan = words(lan);
    ensure(
        ["start", "block", "stop", "isup"]
            .iter()
            .all(|w| subs.iter().any(|s| s == w))
            && ["private", "on-link", "off"]
                .iter()
                .all(|w| lan.iter().any(|s| s == w)),
        format!("fish completions: {out}"),
    )?;
    Ok("autoloaded from vendor_completions.d; completes firewall commands, --lan values".into())
}

/// Builds, lints, installs, checks and purges the package.
pub fn run() -> Result<(), String> {
    let deb = crate::package::build()?;
    let lintian = crate::package::lint(&deb)?;
    println!("package check: lintian: ok");
    print!("{lintian}");
    if installed() {
        return Err(format!(
            "the {PKG} package is installed on this machine; the package checks install and purge it: remove it first (dpkg --purge {PKG}) or run them on a throwaway machine"
        ));
    }
    let had_table = own_table_present()?;
    must(Command::new("dpkg").arg("-i").arg(&deb))?;
    let _purge = Installed;
    let mut c = Checks { failed: Vec::new() };
    c.check("files, owners and modes", check_files());
    c.check(
        "units not enabled, nothing started",
        check_not_enabled_nothing_started(had_table),
    );
    c.check("bitmask-root --version", check_version());
    c.check(
        "bitmask-root --dry-run firewall block",
        check_dry_run_block(),
    );
    c.check("polkit policy (xmllint, polkit's DTD)", check_polkit());
    c.check("systemd units (systemd-analyze)", check_units());
    c.check("man -l renders bitmask-root(8)", check_man());
    c.check("bash completion", check_bash());
    c.check("zsh completion", check_zsh());
    c.check("fish completion", check_fish());
    drop(_purge);
    c.check(
        "dpkg --purge removes everything",
        if installed() || Path::new(BIN).exists() || Path::new(POLICY).exists() {
            Err(format!("{PKG} is still installed after the purge"))
        } else {
            Ok(String::new())
        },
    );
    if c.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("package checks failed: {}", c.failed.join(", ")))
    }
}
