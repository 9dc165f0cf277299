//! The in-process half of `cargo xtask bench` (see `xtask/src/bench.rs`): a small server,
//! built in release mode, that times what runs without starting a process: the library calls
//! an embedding VPN client makes, the kernel's floor (an nftnl batch that only adds and deletes
//! an empty table), and a bounded UDP flood for the packet-rate measurement.
//!
//! It is started by the bench *inside* the bench's throwaway network namespace, so it never
//! enters a namespace itself: every socket it opens is in the namespace it was born in. It
//! refuses to run unless `BITMASK_ROOT_REQUIRE_NETNS` names another namespace than its own
//! (the bench's root one) and its namespace is not PID 1's, and checks that again before every
//! change.
//!
//! Protocol: one command per line on stdin, one answer per line on stdout, `ok key=value ...`
//! or `err message`. Times are in nanoseconds, measured around the call alone: `ns=` wall
//! time, `cpu=` this thread's CPU time (so `ns - cpu` is time spent waiting).
//!
//! ```text
//! load ID PATH            read gateways (one per line) as policy ID; answers bytes= messages=
//! render ID PATH          write the nft text the library renders for ID (to compare with --dry-run)
//! start ID                time firewall::start (discovery, plan, one transaction, read back)
//! stop | status           time firewall::stop / firewall::status
//! phases ID               time start's parts apart: discover= plan= encode= check= commit= verify=
//! commitfloor ID          time committing ID's create batch alone (the library start's floor)
//! floor ID                time a batch of add+delete empty-table pairs as large as ID's batch
//! floor0                  time the smallest batch: add and delete one empty table
//! flooradd                time a batch that only adds an empty table (nothing deleted)
//! hookfloor               time replacing an empty table holding our three base chains
//! hookfloor-setup         create that table (untimed)
//! reset                   delete every table the bench creates (untimed)
//! flood ADDR PORT COUNT MAXMS   send COUNT UDP datagrams (at most MAXMS ms): ns= sent= errors=
//! rss                     this process's peak RSS in KiB
//! quit
//! ```
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use bitmask_root::discovery::{self, Network};
use bitmask_root::engine::{self, REQUIRE_NETNS_ENV};
use bitmask_root::firewall;
use bitmask_root::nft::encode::{self, TableOp};
use bitmask_root::nft::readback::Echo;
use bitmask_root::nft::ruleset::{Chain, ChainKind, Hook, Ruleset};
use bitmask_root::policy::{self, Policy};
use bitmask_root::readback;
use bitmask_root::transport::Session;
use bitmask_root::transport::{self, Encoded};

/// The table the floor batches add and delete.
const FLOOR_TABLE: &str = "bmr_floor";
/// nftables families.
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// The state of the server: policies loaded, their floor batches, the network and runtime.
struct Server {
    rt: tokio::runtime::Runtime,
    net: Network,
    policies: HashMap<String, Policy>,
    floors: HashMap<String, Encoded>,
    creates: HashMap<String, Encoded>,
}

fn main() {
    if let Err(e) = check_namespace() {
        eprintln!("bench_lib: {e}");
        std::process::exit(3);
    }
    let code = match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench_lib: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Refuses to go on unless this process runs in a namespace other than the protected one
/// (named by [`REQUIRE_NETNS_ENV`]) and PID 1's.
fn check_namespace() -> Result<(), String> {
    let protected: u64 = std::env::var(REQUIRE_NETNS_ENV)
        .map_err(|_| format!("{REQUIRE_NETNS_ENV} is not set; run me through cargo xtask bench"))?
        .trim()
        .parse()
        .map_err(|_| format!("{REQUIRE_NETNS_ENV} is not an inode number"))?;
    let ours = ino("/proc/thread-self/ns/net")?;
    let init = ino("/proc/1/ns/net").ok();
    if ours == protected || Some(ours) == init {
        return Err("refusing to run in the machine's own network namespace".into());
    }
    engine::guard_namespace().map_err(|e| e.to_string())
}

fn ino(path: &str) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| format!("stat {path}: {e}"))
}

/// Reads commands until `quit` or end of input.
fn serve() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let net = rt
        .block_on(discovery::discover())
        .map_err(|e| format!("discovery: {e}"))?;
    let mut server = Server {
        rt,
        net,
        policies: HashMap::new(),
        floors: HashMap::new(),
        creates: HashMap::new(),
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            break;
        }
        let answer = match server.handle(&words) {
            Ok(text) => format!("ok {text}"),
            Err(e) => format!("err {}", e.replace('\n', " ")),
        };
        writeln!(out, "{answer}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

impl Server {
    /// Carries out one command.
    fn handle(&mut self, words: &[&str]) -> Result<String, String> {
        match words {
            ["load", id, path] => self.load(id, path),
            ["render", id, path] => self.render(id, path),
            ["start", id] => self.start(id),
            ["stop"] => self.stop(),
            ["status"] => self.status(),
            ["phases", id] => self.phases(id),
            ["floor", id] => self.floor(id),
            ["commitfloor", id] => self.commit_floor(id),
            ["floor0"] => timed_commit(&floor_pairs(1)),
            ["flooradd"] => timed_commit(&add_only()),
            ["hookfloor-setup"] => untimed_commit(&hooked_table(false)?),
            ["hookfloor"] => timed_commit(&hooked_table(true)?),
            ["reset"] => untimed_commit(&reset_batch()?),
            ["flood", addr, port, count, max_ms] => flood(addr, port, count, max_ms),
            ["rss"] => Ok(format!("maxrss_kb={}", peak_rss_kb()?)),
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn policy(&self, id: &str) -> Result<&Policy, String> {
        self.policies
            .get(id)
            .ok_or_else(|| format!("no policy {id}"))
    }

    /// Loads a policy and prepares its size-matched floor batch.
    fn load(&mut self, id: &str, path: &str) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
        let mut b = Policy::builder();
        for word in text.split_whitespace() {
            b = b.gateway(policy::parse_gateway(word).map_err(|e| e.to_string())?);
        }
        let policy = b.build().map_err(|e| e.to_string())?;
        let rs = firewall::plan(&policy, &self.net).map_err(|e| e.to_string())?;
        let (comment, _) = engine::comment_of(&rs).map_err(|e| e.to_string())?;
        let ours = transport::encode_replace(&rs, &comment).map_err(|e| e.to_string())?;
        let create = transport::encode_create(&rs, &comment).map_err(|e| e.to_string())?;
        self.creates.insert(id.to_string(), create);
        let bytes = ours.bytes().len();
        let messages = ours.messages();
        let pair = floor_pairs(1).bytes().len() - floor_pairs(0).bytes().len();
        let base = floor_pairs(0).bytes().len();
        let pairs = bytes.saturating_sub(base).div_ceil(pair.max(1)).max(1);
        let floor = floor_pairs(pairs);
        let floor_bytes = floor.bytes().len();
        self.floors.insert(id.to_string(), floor);
        self.policies.insert(id.to_string(), policy);
        Ok(format!(
            "bytes={bytes} messages={messages} floor_bytes={floor_bytes} floor_pairs={pairs}"
        ))
    }

    /// Writes the nft text the library renders for policy `id`.
    fn render(&self, id: &str, path: &str) -> Result<String, String> {
        let rs = firewall::plan(self.policy(id)?, &self.net).map_err(|e| e.to_string())?;
        let text = engine::render(&rs).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("write {path}: {e}"))?;
        Ok(String::new())
    }

    /// Times `firewall::start` (guard, discovery, plan, commit, read back).
    fn start(&self, id: &str) -> Result<String, String> {
        let policy = self.policy(id)?;
        check_namespace()?;
        let clock = Clock::start()?;
        let r = self.rt.block_on(firewall::start(policy));
        let times = clock.stop()?;
        r.map_err(|e| e.to_string())?;
        Ok(times)
    }

    /// Times `firewall::stop`.
    fn stop(&self) -> Result<String, String> {
        check_namespace()?;
        let clock = Clock::start()?;
        let r = firewall::stop();
        let times = clock.stop()?;
        let was_up = r.map_err(|e| e.to_string())?;
        Ok(format!("{times} was_up={was_up}"))
    }

    /// Times `firewall::status`.
    fn status(&self) -> Result<String, String> {
        let clock = Clock::start()?;
        let r = self.rt.block_on(firewall::status());
        let times = clock.stop()?;
        let up = r.map_err(|e| e.to_string())?.is_up();
        Ok(format!("{times} up={up}"))
    }

    /// Times the parts of a fresh start one by one, as `engine::apply` runs them:
    /// discovery, the pure plan, the encoding (the batch, the expected snapshot read from it,
    /// its fingerprint), the check whether the table exists (socket included), the commit
    /// with the kernel's echo, and the verification (the echo compared with the plan, the
    /// elements dumped, the generation).
    fn phases(&self, id: &str) -> Result<String, String> {
        let policy = self.policy(id)?;
        check_namespace()?;
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let t = Instant::now();
        let net = discovery::discover_now().map_err(|x| e(&x))?;
        let discover = t.elapsed().as_nanos();
        let t = Instant::now();
        let rs = firewall::plan(policy, &net).map_err(|x| e(&x))?;
        let plan = t.elapsed().as_nanos();
        let t = Instant::now();
        let mut enc = encode::ruleset(&rs, encode::Mode::Create, "").map_err(|x| e(&x))?;
        let expected = readback::expected_snapshot(&rs, enc.body());
        let fp = expected.fingerprint();
        let comment = readback::comment_for(&rs.record, fp);
        enc.set_head(encode::Mode::Create, &comment)
            .map_err(|x| e(&x))?;
        let encode = t.elapsed().as_nanos();
        let t = Instant::now();
        let mut conn = Session::open().map_err(|x| e(&x))?;
        if readback::table_exists_on(&mut conn, &rs.table).map_err(|x| e(&x))? {
            return Err("the table exists; phases need a clean namespace".into());
        }
        let check = t.elapsed().as_nanos();
        let t = Instant::now();
        let mut echo = Echo::new(&rs.table);
        let committed = conn
            .commit_echo(&enc, &mut |m| echo.absorb(m))
            .map_err(|x| e(&x))?;
        let commit = t.elapsed().as_nanos();
        let t = Instant::now();
        let mut table = echo
            .finish()
            .filter(|_| committed.echo_complete)
            .ok_or("the kernel's echo is incomplete")?;
        let (seen, consistent) =
            readback::read_elements_on(&mut conn, &rs.table, &mut table).map_err(|x| e(&x))?;
        let now = conn.generation().map_err(|x| e(&x))?;
        let same = committed.generation == Some(now)
            && consistent
            && seen.iter().all(|r| *r == now.res_id())
            && table.comment.as_deref() == Some(comment.as_str())
            && table.snapshot.fingerprint() == fp;
        let verify = t.elapsed().as_nanos();
        if !same {
            return Err("the table verified differs".into());
        }
        Ok(format!(
            "discover={discover} plan={plan} encode={encode} check={check} commit={commit} verify={verify}"
        ))
    }

    /// Times committing the create batch of policy `id` alone, on a socket of its own: what
    /// the kernel must do for this ruleset (the floor of a library start).
    fn commit_floor(&self, id: &str) -> Result<String, String> {
        let enc = self
            .creates
            .get(id)
            .ok_or_else(|| format!("no batch for {id}"))?;
        timed_commit(enc)
    }

    /// Times the size-matched floor batch of policy `id`.
    fn floor(&self, id: &str) -> Result<String, String> {
        let enc = self
            .floors
            .get(id)
            .ok_or_else(|| format!("no floor for {id}"))?;
        timed_commit(enc)
    }
}

/// Wall time and this thread's CPU time (user and system) around one call. What the wall time has beyond the CPU time
/// was spent waiting, e.g. for the kernel's RCU grace period after a table is deleted.
struct Clock {
    wall: Instant,
    cpu_ns: u64,
}

impl Clock {
    fn start() -> Result<Clock, String> {
        let cpu_ns = thread_cpu_ns()?;
        Ok(Clock {
            wall: Instant::now(),
            cpu_ns,
        })
    }

    /// `ns=WALL cpu=CPU`, both in nanoseconds.
    fn stop(self) -> Result<String, String> {
        let wall = self.wall.elapsed().as_nanos();
        let cpu = thread_cpu_ns()?.saturating_sub(self.cpu_ns);
        Ok(format!("ns={wall} cpu={cpu}"))
    }
}

/// The calling thread's time on a CPU so far, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`,
/// exact also while the thread runs, unlike `/proc/thread-self/schedstat`).
#[allow(unsafe_code)]
fn thread_cpu_ns() -> Result<u64, String> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, a live local; the clock id is a
    // constant the kernel always knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(format!(
            "clock_gettime: {}",
            std::io::Error::last_os_error()
        ));
    }
    let secs = u64::try_from(ts.tv_sec).map_err(|_| "negative CPU time".to_string())?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(|_| "negative CPU time".to_string())?;
    Ok(secs * 1_000_000_000 + nanos)
}

/// Commits `enc` after the namespace check and answers its time.
fn timed_commit(enc: &Encoded) -> Result<String, String> {
    check_namespace()?;
    let clock = Clock::start()?;
    let r = transport::commit(enc);
    let times = clock.stop()?;
    r.map_err(|e| e.to_string())?;
    Ok(times)
}

fn untimed_commit(enc: &Encoded) -> Result<String, String> {
    check_namespace()?;
    transport::commit(enc).map_err(|e| e.to_string())?;
    Ok(String::new())
}

/// A batch of `pairs` × (add table, delete table) on the empty floor table: a transaction
/// that changes nothing, as large as asked.
fn floor_pairs(pairs: usize) -> Encoded {
    let ops: Vec<(u8, &str, TableOp)> = (0..pairs)
        .flat_map(|_| {
            [
                (NFPROTO_INET, FLOOR_TABLE, TableOp::Add),
                (NFPROTO_INET, FLOOR_TABLE, TableOp::Delete),
            ]
        })
        .collect();
    encode::tables(&ops).expect("a name without NUL")
}

/// A batch that only adds the empty floor table: a transaction that deletes nothing.
fn add_only() -> Encoded {
    encode::tables(&[(NFPROTO_INET, FLOOR_TABLE, TableOp::Add)]).expect("a name without NUL")
}

/// The floor table with empty base chains on our three hooks (filter output, nat output, nat
/// postrouting). With `replace`, the batch first deletes the existing one, as our replacement
/// batch does, so the kernel unhooks and rehooks the chains.
fn hooked_table(replace: bool) -> Result<Encoded, String> {
    let chain = |name: &str, hook, kind, priority| Chain {
        name: name.to_string(),
        hook,
        kind,
        priority,
        rules: Vec::new(),
    };
    let rs = Ruleset {
        table: FLOOR_TABLE.to_string(),
        record: String::new(),
        sets: Vec::new(),
        chains: vec![
            chain("output", Hook::Output, ChainKind::Filter, 0),
            chain("nat_output", Hook::Output, ChainKind::Nat, -100),
            chain("nat_postrouting", Hook::Postrouting, ChainKind::Nat, 100),
        ],
        set_ip_forward: false,
    };
    let mode = if replace {
        encode::Mode::Replace
    } else {
        encode::Mode::Create
    };
    encode::ruleset(&rs, mode, "").map_err(|e| e.to_string())
}

/// One batch that deletes every table the bench may have created: ours, the floor's, and the
/// iptables-nft ones (add then delete, so an absent table is no error).
fn reset_batch() -> Result<Encoded, String> {
    let names = [
        (NFPROTO_INET, "bitmask"),
        (NFPROTO_INET, FLOOR_TABLE),
        (NFPROTO_IPV4, "filter"),
        (NFPROTO_IPV4, "nat"),
        (NFPROTO_IPV6, "filter"),
        (NFPROTO_IPV6, "nat"),
    ];
    let ops: Vec<(u8, &str, TableOp)> = names
        .iter()
        .flat_map(|&(f, n)| [(f, n, TableOp::Add), (f, n, TableOp::Delete)])
        .collect();
    encode::tables(&ops).map_err(|e| e.to_string())
}

/// Sends `count` small UDP datagrams to `addr:port` as fast as one socket can, stopping after
/// `max_ms`; errors (a reject answers EPERM or ECONNREFUSED) are counted, not fatal.
fn flood(addr: &str, port: &str, count: &str, max_ms: &str) -> Result<String, String> {
    let ip: IpAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
    let count: u64 = count.parse().map_err(|_| format!("bad count {count}"))?;
    let max = Duration::from_millis(max_ms.parse().map_err(|_| format!("bad time {max_ms}"))?);
    check_namespace()?;
    let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| "bind address".to_string())?;
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    sock.connect((ip, port))
        .map_err(|e| format!("connect {ip}: {e}"))?;
    let payload = [0u8; 16];
    let (mut sent, mut errors) = (0u64, 0u64);
    let t = Instant::now();
    while sent + errors < count {
        match sock.send(&payload) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
        if (sent + errors) % 256 == 0 && t.elapsed() >= max {
            break;
        }
    }
    let ns = t.elapsed().as_nanos();
    Ok(format!("ns={ns} sent={sent} errors={errors}"))
}

/// This process's peak resident set, from /proc/self/status (VmHWM).
fn peak_rss_kb() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".to_string())
}
