//! The bench's throwaway world: two network namespaces joined by a veth pair that never
//! touches the machine's own namespace, a scratch directory, and the check that a thread
//! really is inside the bench namespace before anything runs there.
//!
//! ```text
//!  bmr-bench-PID (client)                         bmr-bench-PID-sink
//!  veth-c 192.168.77.2/24, 2001:db8:77::2/64 ===  veth-s 192.168.77.1/24, 2001:db8:77::1/64
//!  default routes via the sink                    nft: ip daddr 203.0.113.0/24 counted, dropped
//! ```
//!
//! Every guard here removes what it made when dropped, on success, on error and during a
//! panic; Ctrl-C only sets a flag (see [`super::sys`]) so the same path runs.

use std::fs::File;
use std::io::Write as _;
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sys;

/// The client's device, as the firewall sees it.
pub const DEV: &str = "veth-c";
/// The sink's side of the pair.
pub const PEER_DEV: &str = "veth-s";
/// The client's IPv4 LAN.
pub const LAN4: &str = "192.168.77.0/24";
/// The client's IPv6 LAN (documentation prefix).
pub const LAN6: &str = "2001:db8:77::/64";
/// The sink's addresses, the client's next hops.
pub const SINK4: &str = "192.168.77.1";
const SINK6: &str = "2001:db8:77::1";
/// The gateway that traffic is sent to in the packet-rate measurement (dropped by the sink).
pub const TARGET_GW: &str = "203.0.113.10";
/// A non-gateway address: traffic to it is rejected by the firewall.
pub const NOT_GW: &str = "198.51.100.99";

/// The inode of a namespace file.
pub fn ns_ino(path: &str) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| format!("stat {path}: {e}"))
}

/// Runs `ip ARGS` (in this machine's namespace; `ip -n NAME` switches to NAME itself).
fn ip(args: &[&str]) -> Result<(), String> {
    run_quiet(Command::new("ip").args(args))
}

fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A named network namespace that this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    ino: u64,
}

impl Netns {
    /// Creates `/run/netns/NAME` and checks it is a new namespace, not the protected one.
    fn create(name: &str, root_ino: u64) -> Result<Netns, String> {
        ip(&["netns", "add", name])?;
        // From here on, dropping `ns` deletes the namespace whatever fails next.
        let mut ns = Netns {
            name: name.to_string(),
            ino: 0,
        };
        ns.ino = ns_ino(&ns.path_str())?;
        if ns.ino == root_ino {
            return Err(format!("{name} is the machine's own namespace; refusing"));
        }
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name, for `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path_str(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("bench: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    fn create(name: &str) -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    /// A path inside the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The whole bench world. Fields drop in order: the sink, then the client, then the files.
#[derive(Debug)]
pub struct Lab {
    /// The sink namespace.
    pub sink: Netns,
    /// The client namespace, where every firewall is applied.
    pub client: Netns,
    /// Scratch files.
    pub scratch: Scratch,
    /// The inode of this process's own namespace (the one to protect).
    pub root_ino: u64,
}

impl Lab {
    /// Builds the namespaces, the veth pair and the sink's counter.
    pub fn create(root_ino: u64) -> Result<Lab, String> {
        let base = format!("bmr-bench-{}", std::process::id());
        let scratch = Scratch::create(&base)?;
        let client = Netns::create(&base, root_ino)?;
        let sink = Netns::create(&format!("{base}-sink"), root_ino)?;
        let lab = Lab {
            sink,
            client,
            scratch,
            root_ino,
        };
        lab.wire()?;
        Ok(lab)
    }

    /// The veth pair (created inside the client, its peer moved straight to the sink),
    /// addresses, routes, and the sink's drop-and-count rule.
    fn wire(&self) -> Result<(), String> {
        let (c, s) = (self.client.name(), self.sink.name());
        for ns in [c, s] {
            run_quiet(
                Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-qw"])
                    .args([
                        "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0",
                    ]),
            )?;
        }
        ip(&[
            "-n", c, "link", "add", DEV, "type", "veth", "peer", "name", PEER_DEV, "netns", s,
        ])?;
        ip(&["-n", c, "addr", "add", "192.168.77.2/24", "dev", DEV])?;
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            "2001:db8:77::2/64",
            "dev",
            DEV,
            "nodad",
        ])?;
        ip(&["-n", s, "addr", "add", "192.168.77.1/24", "dev", PEER_DEV])?;
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            "2001:db8:77::1/64",
            "dev",
            PEER_DEV,
            "nodad",
        ])?;
        ip(&["-n", c, "link", "set", DEV, "up"])?;
        ip(&["-n", s, "link", "set", PEER_DEV, "up"])?;
        ip(&["-n", c, "route", "add", "default", "via", SINK4])?;
        ip(&["-n", c, "-6", "route", "add", "default", "via", SINK6])?;
        self.sink_rule()?;
        self.wait_link_local()
    }

    /// In the sink: count and drop what is sent to the gateway range, so a flood ends there.
    fn sink_rule(&self) -> Result<(), String> {
        let rules = "table inet sink {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n  ip daddr 203.0.113.0/24 counter drop\n }\n}\n";
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.sink.name(), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft in the sink: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| format!("nft in the sink: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("nft in the sink: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in the sink: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Waits (at most 5 s) for the client's link-local address, so the network that the
    /// firewall plans for does not change during the bench.
    fn wait_link_local(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("ip")
                .args([
                    "-n",
                    self.client.name(),
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    DEV,
                    "scope",
                    "link",
                ])
                .output()
                .map_err(|e| format!("ip addr: {e}"))?;
            if String::from_utf8_lossy(&out.stdout).contains("fe80::") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{DEV} got no link-local address"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/run/netns/NAME` of the client.
    pub fn client_path(&self) -> String {
        self.client.path_str()
    }

    /// The client namespace's inode.
    pub fn client_ino(&self) -> u64 {
        self.client.ino
    }
}

/// Proof that the current thread is inside the bench's client namespace. Not `Send`: it is
/// only valid on the thread that entered.
#[derive(Debug)]
pub struct Inside {
    expect: u64,
    root: u64,
    _thread_bound: PhantomData<*const ()>,
}

impl Inside {
    /// Moves the calling thread into the namespace at `path` and checks that it arrived.
    pub fn enter(path: &str, expect: u64, root: u64) -> Result<Inside, String> {
        if expect == root {
            return Err("refusing to enter the machine's own namespace".into());
        }
        let file = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
        let ino = file
            .metadata()
            .map(|m| m.ino())
            .map_err(|e| format!("stat {path}: {e}"))?;
        if ino != expect {
            return Err(format!("{path} is not the namespace the bench created"));
        }
        sys::enter_netns(&file).map_err(|e| format!("setns {path}: {e}"))?;
        let inside = Inside {
            expect,
            root,
            _thread_bound: PhantomData,
        };
        inside.check()?;
        Ok(inside)
    }

    /// Checks again that this thread is in the bench namespace (not the machine's, not PID
    /// 1's). Called before every process is started and every change is made.
    pub fn check(&self) -> Result<(), String> {
        let now = ns_ino("/proc/thread-self/ns/net")?;
        let init = ns_ino("/proc/1/ns/net").ok();
        if now != self.expect || now == self.root || Some(now) == init {
            return Err("this thread is not in the bench namespace; refusing".into());
        }
        Ok(())
    }

    /// A command to run inside the namespace (children inherit this thread's namespace).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, String> {
        self.check()?;
        let mut c = Command::new(program);
        c.env_remove("UDP").env_remove("DEBUG").env_remove("TEST");
        // `cargo run` (behind `cargo xtask`) sets LD_LIBRARY_PATH to its target and toolchain
        // directories; the dynamic loader would search them for every library of every
        // process started here, which no user's system does.
        c.env_remove("LD_LIBRARY_PATH");
        Ok(c)
    }

    /// Packets sent by the client's device so far (from this thread's `/proc/.../net/dev`).
    pub fn tx_packets(&self) -> Result<u64, String> {
        let text = std::fs::read_to_string("/proc/thread-self/net/dev")
            .map_err(|e| format!("read net/dev: {e}"))?;
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{DEV}:")))
            .ok_or_else(|| format!("{DEV} missing from net/dev"))?;
        let fields: Vec<&str> = line
            .split(':')
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        fields
            .get(9)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad net/dev line {line:?}"))
    }
}

/// Deletes namespaces named `bmr-bench-PID[-sink]` whose process is gone (left by a bench
/// that was killed with SIGKILL). Never touches another name or a live bench's namespace.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("bmr-bench-") else {
            continue;
        };
        let pid = rest.strip_suffix("-sink").unwrap_or(rest);
        if pid.parse::<u32>().is_err() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("bench: removing namespace {name} left by a bench that died");
        if let Err(e) = ip(&["netns", "del", &name]) {
            eprintln!("bench: {e}");
        }
    }
}
