//! A real `dnsmasq` (Debian's `dnsmasq-base`) inside a namespace: the resolver stack of a
//! stock desktop, where systemd-resolved (127.0.0.53) or NetworkManager's dnsmasq (127.0.1.1)
//! forwards every lookup to the DHCP-given resolver, usually the LAN router.
//!
//! dnsmasq runs in the foreground under `timeout -s KILL` (so it ends even if the test process
//! is killed), with no configuration file, no `/etc/hosts`, no `/etc/resolv.conf`, no pid
//! file and no cache; it is killed when the [`Dnsmasq`] is dropped (also during a panic).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cmd::{CmdOutput, Running};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// Where Debian installs it.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The longest a dnsmasq of the harness lives.
pub const LIFETIME: Duration = Duration::from_secs(600);

/// A dnsmasq running in a namespace, listening on one address, port 53 (udp and tcp).
pub struct Dnsmasq {
    running: Option<Running>,
    listen: IpAddr,
}

impl std::fmt::Debug for Dnsmasq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsmasq")
            .field("listen", &self.listen)
            .finish()
    }
}

impl Dnsmasq {
    /// A forwarding stub on `listen` that sends every query to `upstream` port 53, udp and tcp
    /// (what systemd-resolved on 127.0.0.53 or NetworkManager's dnsmasq on 127.0.1.1 do with
    /// the resolver DHCP handed out).
    pub fn stub(ns: &Netns, listen: IpAddr, upstream: IpAddr) -> Result<Dnsmasq> {
        Self::start(ns, listen, &[format!("--server={upstream}")])
    }

    /// A server on `listen` that answers every A query with `listen` itself, as the harness's
    /// [`crate::probe::dns::DnsResponder`] does, so a client sees who answered.
    pub fn answering_with_own_address(ns: &Netns, listen: IpAddr) -> Result<Dnsmasq> {
        Self::start(ns, listen, &[format!("--address=/#/{listen}")])
    }

    /// Starts dnsmasq on `listen` port 53 with `extra` options, and waits until it listens
    /// (udp and tcp; read from the process's own `/proc/PID/net`, no packet is sent).
    pub fn start(ns: &Netns, listen: IpAddr, extra: &[String]) -> Result<Dnsmasq> {
        if !Path::new(DNSMASQ).exists() {
            return Err(Error::new(format!(
                "{DNSMASQ} is missing: install Debian's dnsmasq-base (cargo xtask test does)"
            )));
        }
        let mut args: Vec<String> = vec![
            "-s".into(),
            "KILL".into(),
            LIFETIME.as_secs().to_string(),
            DNSMASQ.into(),
            "--keep-in-foreground".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--conf-file=/dev/null".into(),
            "--pid-file=".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={listen}"),
            "--port=53".into(),
            "--cache-size=0".into(),
            "--log-queries".into(),
            "--log-facility=-".into(),
            "--user=nobody".into(),
            "--group=nogroup".into(),
        ];
        args.extend(extra.iter().cloned());
        let running = ns.spawn_command("timeout", &args)?;
        let mut d = Dnsmasq {
            running: Some(running),
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = d.pid();
            if let Some(pid) = pid {
                if listening(pid, listen) {
                    return Ok(d);
                }
            }
            let exited = d.running.as_ref().is_none_or(|r| !alive(r.pid()));
            if exited || Instant::now() > deadline {
                let out = d.stop()?;
                return Err(Error::new(format!(
                    "dnsmasq on {listen} in {} did not start listening: exit {:?}\n{}",
                    ns.name(),
                    out.code,
                    out.stderr.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> IpAddr {
        self.listen
    }

    /// The dnsmasq process (the child of `timeout`), while it runs.
    fn pid(&self) -> Option<u32> {
        let r = self.running.as_ref()?;
        r.descendants().into_iter().find(|p| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == Path::new(DNSMASQ))
        })
    }

    /// Kills dnsmasq and returns what it logged (every query, with `--log-queries`).
    pub fn stop(&mut self) -> Result<CmdOutput> {
        let Some(mut running) = self.running.take() else {
            return Err(Error::new("dnsmasq already stopped"));
        };
        kill_tree(&mut running);
        running.finish(Duration::from_secs(5))
    }
}

/// SIGKILLs dnsmasq and its helpers (it forks one per tcp connection), then `timeout`.
fn kill_tree(running: &mut Running) {
    for pid in running.descendants() {
        let _ = crate::sys::sigkill(pid);
    }
    running.kill();
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.take() {
            kill_tree(&mut r);
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z") | Some("X") | None)
    })
}

/// Whether process `pid` (in its own network namespace) has a udp socket and a listening tcp
/// socket on `addr` port 53.
fn listening(pid: u32, addr: IpAddr) -> bool {
    let want = socket_hex(addr, 53);
    let has = |file: &str, listen_state: Option<&str>| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let mut f = l.split_whitespace();
                let local = f.nth(1);
                let state = f.nth(1);
                local == Some(want.as_str()) && listen_state.is_none_or(|s| state == Some(s))
            })
        })
    };
    let (udp, tcp) = match addr {
        IpAddr::V4(_) => ("udp", "tcp"),
        IpAddr::V6(_) => ("udp6", "tcp6"),
    };
    has(udp, None) && has(tcp, Some("0A"))
}

/// An address and port as `/proc/net/{udp,tcp}` print them: the address's bytes as
/// native-endian 32-bit words in hex, a colon, the port in hex.
fn socket_hex(addr: IpAddr, port: u16) -> String {
    let octets: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let words: String = octets
        .chunks(4)
        .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    format!("{words}:{port:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                socket_hex("127.0.0.53".parse().unwrap(), 53),
                "3500007F:0035"
            );
        }
    }
}
