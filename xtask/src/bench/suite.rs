//! What is measured and in which order. Runs on one thread that entered the bench namespace;
//! every process it starts and the helper are born there.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::helper::Helper;
use super::iptables::{self, Step};
use super::lab::{Inside, Lab, NOT_GW, TARGET_GW};
use super::proc::{self, Ran};
use super::stats::Samples;
use super::trace::Counts;
use super::{sys, Built, Opts};

/// Which gateways: IPv4 only, or half of them IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Only IPv4 gateways.
    V4,
    /// Half IPv4, half IPv6 (rounded towards IPv4).
    Mix,
}

impl Family {
    /// A short name.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::Mix => "IPv4+IPv6",
        }
    }
}

/// The state a competitor starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre {
    /// No table at all.
    Clean,
    /// Our table applied (by the library) with this group's gateways.
    Ours,
    /// The original's rules applied (by iptables-restore).
    Iptables,
    /// The floor table with our three empty base chains.
    Hooked,
}

/// One competitor: what is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `bitmask-root firewall start GW...` on a clean namespace.
    BinStart,
    /// The same with the "before" binary (`--before`).
    BeforeStart,
    /// Our create batch committed alone on a fresh socket (no discovery, no verification):
    /// the floor of a library start.
    CommitFloor,
    /// `firewall::start` in process, clean.
    LibStart,
    /// `nft -f` of the `--dry-run` text, clean.
    NftStart,
    /// `iptables-restore --noflush` + `ip6tables-restore --noflush` of the B2 rules, clean.
    IptRestore,
    /// The original's per-rule way, clean.
    IptRules,
    /// One batch that only adds an empty table.
    FloorAdd,
    /// One batch that adds and deletes an empty table.
    Floor0,
    /// Add/delete-empty-table pairs, as many bytes as our batch.
    FloorSized,
    /// `bitmask-root firewall start` while up.
    BinReplace,
    /// `firewall::start` while up.
    LibReplace,
    /// `nft -f` of `add table; delete table;` + the text, while up.
    NftReplace,
    /// The original's `start` while started (checks only).
    IptRulesRestart,
    /// Replacing an empty table holding our three base chains.
    HookFloor,
    /// `bitmask-root firewall stop`.
    BinStop,
    /// `firewall::stop`.
    LibStop,
    /// `nft delete table inet bitmask`.
    NftDelete,
    /// The original's `firewall stop`.
    IptRulesStop,
    /// `bitmask-root firewall isup`.
    BinIsup,
    /// `firewall::status`.
    LibStatus,
    /// `nft list table inet bitmask`.
    NftList,
    /// The original's `isup`: `iptables --list bitmask --numeric`.
    IptList,
    /// `bitmask-root version`: starting our process, no netlink.
    BinVersion,
    /// `nft --version`: starting nft, no netlink.
    NftVersion,
    /// A Rust program that only exits: the floor of a process start.
    MinProcess,
}

/// Every competitor, in round order.
pub const ALL_OPS: [Op; 26] = [
    Op::FloorAdd,
    Op::Floor0,
    Op::FloorSized,
    Op::CommitFloor,
    Op::BinStart,
    Op::BeforeStart,
    Op::NftStart,
    Op::LibStart,
    Op::IptRestore,
    Op::IptRules,
    Op::HookFloor,
    Op::BinReplace,
    Op::NftReplace,
    Op::LibReplace,
    Op::IptRulesRestart,
    Op::BinStop,
    Op::NftDelete,
    Op::LibStop,
    Op::IptRulesStop,
    Op::BinIsup,
    Op::NftList,
    Op::LibStatus,
    Op::IptList,
    Op::BinVersion,
    Op::NftVersion,
    Op::MinProcess,
];

impl Op {
    fn pre(self) -> Pre {
        match self {
            Op::BinStart | Op::LibStart | Op::NftStart | Op::IptRestore | Op::IptRules => {
                Pre::Clean
            }
            Op::BeforeStart | Op::CommitFloor | Op::MinProcess => Pre::Clean,
            Op::FloorAdd | Op::Floor0 | Op::FloorSized => Pre::Clean,
            Op::HookFloor => Pre::Hooked,
            Op::IptRulesRestart | Op::IptRulesStop | Op::IptList => Pre::Iptables,
            Op::BinVersion | Op::NftVersion => Pre::Clean,
            _ => Pre::Ours,
        }
    }

    /// Whether it is one of the original's iptables ways (IPv4 gateways only).
    pub fn is_iptables(self) -> bool {
        matches!(
            self,
            Op::IptRestore | Op::IptRules | Op::IptRulesRestart | Op::IptRulesStop | Op::IptList
        )
    }

    /// Whether it measures only a process start (the same at every gateway count).
    pub fn is_start_only(self) -> bool {
        matches!(self, Op::BinVersion | Op::NftVersion | Op::MinProcess)
    }

    /// Whether it starts one process per rule.
    pub fn is_per_rule(self) -> bool {
        matches!(self, Op::IptRules | Op::IptRulesRestart | Op::IptRulesStop)
    }

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Op::BinStart => "bitmask-root firewall start",
            Op::BeforeStart => "bitmask-root before (see Machine), firewall start",
            Op::CommitFloor => "kernel floor: our batch alone (commit, no check)",
            Op::LibStart => "library firewall::start (no process)",
            Op::NftStart => "nft -f (same rules)",
            Op::IptRestore => "iptables-restore + ip6tables-restore",
            Op::IptRules => "iptables, one process per rule (original)",
            Op::FloorAdd => "kernel floor: add empty table (no delete)",
            Op::Floor0 => "kernel floor: add+delete empty table",
            Op::FloorSized => "kernel floor: same-size add/delete batch",
            Op::BinReplace => "bitmask-root firewall start (while up)",
            Op::LibReplace => "library firewall::start (while up)",
            Op::NftReplace => "nft -f (add+delete table, same rules)",
            Op::IptRulesRestart => "iptables per rule, start while started",
            Op::HookFloor => "kernel floor: replace empty hooked table",
            Op::BinStop => "bitmask-root firewall stop",
            Op::LibStop => "library firewall::stop",
            Op::NftDelete => "nft delete table inet bitmask",
            Op::IptRulesStop => "iptables per rule, stop (original)",
            Op::BinIsup => "bitmask-root firewall isup",
            Op::LibStatus => "library firewall::status",
            Op::NftList => "nft list table inet bitmask",
            Op::IptList => "iptables --list bitmask (original isup)",
            Op::BinVersion => "bitmask-root version (process start only)",
            Op::NftVersion => "nft --version (process start only)",
            Op::MinProcess => "minimal Rust binary (process start floor)",
        }
    }

    /// The section of the table it belongs to.
    pub fn section(self) -> &'static str {
        match self {
            Op::BinStart | Op::LibStart | Op::NftStart | Op::IptRestore | Op::IptRules => {
                "fresh start"
            }
            Op::FloorAdd | Op::Floor0 | Op::FloorSized => "fresh start",
            Op::BeforeStart | Op::CommitFloor => "fresh start",
            Op::BinReplace
            | Op::LibReplace
            | Op::NftReplace
            | Op::IptRulesRestart
            | Op::HookFloor => "replacement",
            Op::BinStop | Op::LibStop | Op::NftDelete | Op::IptRulesStop => "stop",
            Op::BinVersion | Op::NftVersion | Op::MinProcess => "process start",
            _ => "isup",
        }
    }
}

/// The results of one gateway count.
#[derive(Debug, Clone)]
pub struct Group {
    /// The gateway family.
    pub family: Family,
    /// How many gateways.
    pub n: usize,
    /// Samples per competitor.
    pub ops: BTreeMap<Op, Samples>,
    /// Our batch: bytes and netlink messages; the floor's add/delete pairs.
    pub batch_bytes: u64,
    /// See `batch_bytes`.
    pub batch_messages: u64,
    /// See `batch_bytes`.
    pub floor_pairs: u64,
    /// Medians of the parts of a library start (ms): discover, plan, encode, commit, readback.
    pub phases: Vec<(&'static str, f64)>,
}

/// One packet-rate result.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Which ruleset: "none", "bitmask-root", "iptables (original rules)".
    pub ruleset: &'static str,
    /// Its gateway count (0 for none).
    pub n: usize,
    /// Whether the datagrams went to a gateway (accepted) or elsewhere (rejected).
    pub accepted: bool,
    /// Datagrams per second per round.
    pub pps: Vec<f64>,
    /// Datagrams that left the device per datagram sent (median).
    pub delivered: f64,
}

/// Processes started by one command, traced.
#[derive(Debug, Clone)]
pub struct Census {
    /// The command.
    pub what: String,
    /// execve calls that succeeded, the command itself included (`None`: no strace).
    pub execs: Option<usize>,
}

/// What one command asked of the kernel, before and after (traced with strace).
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The command.
    pub what: String,
    /// The "before" binary's counts (`None`: no before binary, or it failed).
    pub before: Option<Counts>,
    /// This tree's binary's counts (or the other program's, for reference rows).
    pub after: Option<Counts>,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Netlink messages and system calls per command, before and after.
    pub traffic: Vec<Traffic>,
    /// The "before" commit, its binary's size, and the process floor's size.
    pub before: Option<(String, u64)>,
    /// The size of the minimal Rust binary (the process start floor).
    pub floor_bytes: u64,
    /// The gateway counts, in run order.
    pub groups: Vec<Group>,
    /// Packet rates.
    pub flows: Vec<Flow>,
    /// Processes per command.
    pub census: Vec<Census>,
    /// The release binary's size in bytes, and stripped.
    pub binary_bytes: u64,
    /// See `binary_bytes`.
    pub stripped_bytes: Option<u64>,
    /// The helper's peak RSS (an embedding process: the library plus the bench's own code).
    pub helper_rss_kb: Option<u64>,
    /// Wall time of the whole bench.
    pub wall: Duration,
    /// `/proc/loadavg` before and after.
    pub load: (String, String),
}

/// Enters the client namespace on a new thread, measures everything there, and returns.
/// The thread is joined before this returns, so the namespace guards in `lab` outlive it.
pub fn run_in_namespace(lab: &Lab, built: &Built, opts: &Opts) -> Result<Results, String> {
    let path = lab.client_path();
    let (expect, root) = (lab.client_ino(), lab.root_ino);
    let dir = lab.scratch.path("");
    let (built, opts) = (built.clone(), opts.clone());
    let worker = std::thread::Builder::new()
        .name("bench-netns".into())
        .spawn(move || -> Result<Results, String> {
            let inside = Inside::enter(&path, expect, root)?;
            let mut bench = Bench::new(&inside, &built, &opts, dir)?;
            bench.all()
        })
        .map_err(|e| format!("could not start the bench thread: {e}"))?;
    worker
        .join()
        .map_err(|_| "the bench thread panicked".to_string())?
}

/// One timed run of a competitor.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Wall time.
    wall: Duration,
    /// CPU time (user and system) of the processes, or of the helper's thread.
    cpu: Option<Duration>,
    /// The largest peak RSS of its processes.
    maxrss_kb: Option<u64>,
    /// Processes started (0 for an in-process call).
    processes: Option<usize>,
}

impl Measured {
    /// Processes run one after the other: their times add up.
    fn processes(runs: &[Ran]) -> Measured {
        Measured {
            wall: runs.iter().map(|r| r.elapsed).sum(),
            cpu: Some(runs.iter().map(|r| r.cpu).sum()),
            maxrss_kb: runs.iter().map(|r| r.maxrss_kb).max(),
            processes: Some(runs.len()),
        }
    }

    /// A helper answer with `ns=` and `cpu=`.
    fn from_answer(a: &super::helper::Answer) -> Result<Measured, String> {
        Ok(Measured {
            wall: a.elapsed()?,
            cpu: Some(Duration::from_nanos(a.num("cpu")?)),
            maxrss_kb: None,
            processes: Some(0),
        })
    }
}

/// The files of one gateway count.
struct Files {
    id: String,
    gateways: Vec<IpAddr>,
    fresh_nft: PathBuf,
    replace_nft: PathBuf,
    ipt4: PathBuf,
    ipt6: PathBuf,
    /// Our batch's bytes and messages, and the same-size floor's add/delete pairs.
    batch: (u64, u64, u64),
}

/// The measuring state, bound to the thread inside the namespace.
struct Bench<'a> {
    inside: &'a Inside,
    built: &'a Built,
    opts: &'a Opts,
    dir: PathBuf,
    helper: Helper,
    err: PathBuf,
}

impl<'a> Bench<'a> {
    fn new(
        inside: &'a Inside,
        built: &'a Built,
        opts: &'a Opts,
        dir: PathBuf,
    ) -> Result<Self, String> {
        let helper = Helper::start(inside, &built.helper)?;
        let err = dir.join("stderr.txt");
        Ok(Bench {
            inside,
            built,
            opts,
            dir,
            helper,
            err,
        })
    }

    /// Every measurement, in order.
    fn all(&mut self) -> Result<Results, String> {
        let started = Instant::now();
        let load0 = loadavg();
        self.ask("reset")?;
        let mut groups = Vec::new();
        let mut census = Vec::new();
        let mut traffic = Vec::new();
        let plan: Vec<(Family, usize)> = self
            .opts
            .sizes
            .iter()
            .map(|&n| (Family::V4, n))
            .chain(self.opts.mix_sizes.iter().map(|&n| (Family::Mix, n)))
            .collect();
        for (family, n) in plan {
            let files = self.prepare(family, n)?;
            if family == Family::V4
                && (groups.is_empty() || n == *self.opts.sizes.last().unwrap_or(&n))
            {
                census.extend(self.census(&files)?);
                traffic.extend(self.traffic(&files)?);
            }
            groups.push(self.group(family, n, &files)?);
        }
        let flows = self.flows(&groups)?;
        self.ask("reset")?;
        let helper_rss_kb = self.ask("rss").ok().and_then(|a| a.num("maxrss_kb").ok());
        let binary_bytes = std::fs::metadata(&self.built.bin)
            .map(|m| m.len())
            .map_err(|e| format!("stat {}: {e}", self.built.bin.display()))?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(Results {
            traffic,
            before: self
                .built
                .before
                .as_ref()
                .map(|(commit, bin)| (commit.clone(), size(bin))),
            floor_bytes: size(&self.built.floor),
            groups,
            flows,
            census,
            binary_bytes,
            stripped_bytes: self.stripped_size(),
            helper_rss_kb,
            wall: started.elapsed(),
            load: (load0, loadavg()),
        })
    }

    fn ask(&mut self, command: &str) -> Result<super::helper::Answer, String> {
        if sys::interrupted() {
            return Err("interrupted (Ctrl-C)".into());
        }
        self.helper.ask(self.inside, command)
    }

    /// Writes the gateways, the nft texts and the iptables-restore inputs of one group, and
    /// checks that the binary, the library and nft all mean the same ruleset.
    fn prepare(&mut self, family: Family, n: usize) -> Result<Files, String> {
        let id = format!("{}-{n}", if family == Family::V4 { "v4" } else { "mix" });
        let gateways = gateways(family, n);
        let gw_file = self.dir.join(format!("{id}.gateways"));
        let text: String = gateways.iter().map(|g| format!("{g}\n")).collect();
        write(&gw_file, &text)?;
        let loaded = self.ask(&format!("load {id} {}", gw_file.display()))?;
        let batch = (
            loaded.num("bytes")?,
            loaded.num("messages")?,
            loaded.num("floor_pairs")?,
        );
        let mut cmd = self.inside.command(&self.built.bin)?;
        cmd.args(["--dry-run", "firewall", "start"])
            .args(gateways.iter().map(|g| g.to_string()));
        let dry = proc::output(self.inside, cmd)?;
        let lib_text = self.dir.join(format!("{id}.lib.nft"));
        self.ask(&format!("render {id} {}", lib_text.display()))?;
        if std::fs::read_to_string(&lib_text).unwrap_or_default() != dry {
            return Err(format!(
                "{id}: the library's ruleset differs from the binary's --dry-run"
            ));
        }
        let files = Files {
            fresh_nft: self.dir.join(format!("{id}.fresh.nft")),
            replace_nft: self.dir.join(format!("{id}.replace.nft")),
            ipt4: self.dir.join(format!("{id}.ipt4")),
            ipt6: self.dir.join(format!("{id}.ipt6")),
            id,
            gateways,
            batch,
        };
        let fresh = nft_input(&dry);
        write(&files.fresh_nft, &fresh)?;
        write(
            &files.replace_nft,
            &format!("add table inet bitmask\ndelete table inet bitmask\n{fresh}"),
        )?;
        write(&files.ipt4, &iptables::restore_v4(&files.gateways))?;
        write(&files.ipt6, &iptables::restore_v6())?;
        self.check_same_rules(&files, &dry, &fresh)?;
        Ok(files)
    }

    /// Checks that `nft -f` of the text and the library load the same ruleset: after each,
    /// `nft list table inet bitmask` prints the `--dry-run` text (up to white space: nft wraps
    /// long element lists). (Not `isup`: it
    /// compares the kernel's expressions, and nft encodes some matches differently, e.g. it
    /// merges two adjacent port matches into one 4-byte load.)
    fn check_same_rules(&mut self, f: &Files, dry: &str, fresh: &str) -> Result<(), String> {
        for loader in ["nft -f", "library"] {
            self.ask("reset")?;
            if loader == "nft -f" {
                let mut nft = self.inside.command("nft")?;
                nft.arg("-f").arg(&f.fresh_nft);
                proc::run_ok(self.inside, nft, &self.err)?;
            } else {
                self.ask(&format!("start {}", f.id))?;
            }
            let mut list = self.inside.command("nft")?;
            list.args(["list", "table", "inet", "bitmask"]);
            let listed = proc::output(self.inside, list)?;
            // After an IPv4 match, nft -f encodes a bare `reject` as ICMP (not the ICMPX we
            // send) and lists it with its code: the same answer to the same packets.
            let (listed, want) = if loader == "nft -f" {
                (
                    listed
                        .replace("reject with icmp port-unreachable", "reject")
                        .replace("reject with icmpv6 port-unreachable", "reject"),
                    fresh,
                )
            } else {
                (listed, dry)
            };
            if squeeze(&listed) != squeeze(want) {
                return Err(format!(
                    "{}: after {loader}, nft lists another ruleset than --dry-run",
                    f.id
                ));
            }
        }
        self.ask("reset")?;
        Ok(())
    }

    /// Which competitors run for this group.
    fn ops_for(&self, family: Family, n: usize) -> Vec<Op> {
        ALL_OPS
            .iter()
            .copied()
            .filter(|op| !op.is_iptables() || family == Family::V4)
            .filter(|op| !op.is_per_rule() || n <= self.opts.iptables_rules_max)
            .filter(|op| {
                !op.is_start_only() || (family == Family::V4 && Some(&n) == self.opts.sizes.first())
            })
            .filter(|op| *op != Op::BeforeStart || self.built.before.is_some())
            .collect()
    }

    /// Warm-up and measured rounds of one gateway count.
    fn group(&mut self, family: Family, n: usize, f: &Files) -> Result<Group, String> {
        let ops = self.ops_for(family, n);
        let total = self.opts.warmup + self.opts.runs;
        eprintln!(
            "bench: {} gateways ({}), {} competitors × {total} rounds",
            n,
            family.label(),
            ops.len()
        );
        let mut samples: BTreeMap<Op, Samples> = BTreeMap::new();
        for round in 0..total {
            let order: Vec<Op> = if round % 2 == 0 {
                ops.clone()
            } else {
                ops.iter().rev().copied().collect()
            };
            for &op in &order {
                self.establish(op.pre(), f)?;
                let m = self.time(op, f)?;
                if round >= self.opts.warmup {
                    let s = samples.entry(op).or_default();
                    s.push(m.wall, m.cpu, m.maxrss_kb);
                    s.processes = m.processes.or(s.processes);
                }
            }
        }
        self.ask("reset")?;
        let phases = self.phases(f)?;
        Ok(Group {
            family,
            n,
            ops: samples,
            batch_bytes: f.batch.0,
            batch_messages: f.batch.1,
            floor_pairs: f.batch.2,
            phases,
        })
    }

    /// Medians of the parts of a library start (fresh each time).
    fn phases(&mut self, f: &Files) -> Result<Vec<(&'static str, f64)>, String> {
        const PARTS: [&str; 6] = ["discover", "plan", "encode", "check", "commit", "verify"];
        let mut parts: Vec<Samples> = vec![Samples::default(); PARTS.len()];
        for _ in 0..self.opts.runs.min(9) {
            self.ask("reset")?;
            let a = self.ask(&format!("phases {}", f.id))?;
            for (i, name) in PARTS.iter().enumerate() {
                parts[i].push(Duration::from_nanos(a.num(name)?), None, None);
            }
        }
        self.ask("reset")?;
        Ok(PARTS
            .iter()
            .zip(&parts)
            .map(|(n, s)| (*n, s.median().unwrap_or(0.0)))
            .collect())
    }

    /// Rebuilds a starting state, untimed.
    fn establish(&mut self, pre: Pre, f: &Files) -> Result<(), String> {
        self.ask("reset")?;
        match pre {
            Pre::Clean => Ok(()),
            Pre::Ours => self.ask(&format!("start {}", f.id)).map(drop),
            Pre::Hooked => self.ask("hookfloor-setup").map(drop),
            Pre::Iptables => self.restore(&f.ipt4, &f.ipt6).map(drop),
        }
    }

    /// Runs one competitor once.
    fn time(&mut self, op: Op, f: &Files) -> Result<Measured, String> {
        let gws: Vec<String> = f.gateways.iter().map(|g| g.to_string()).collect();
        match op {
            Op::BinStart | Op::BinReplace => {
                let mut c = self.inside.command(&self.built.bin)?;
                c.args(["firewall", "start"]).args(&gws);
                self.process(c)
            }
            Op::BeforeStart => {
                let Some((_, before)) = &self.built.before else {
                    return Err("no before binary".into());
                };
                let mut c = self.inside.command(before)?;
                c.args(["firewall", "start"]).args(&gws);
                self.process(c)
            }
            Op::MinProcess => {
                let c = self.inside.command(&self.built.floor)?;
                self.process(c)
            }
            Op::CommitFloor => self.helper_op(&format!("commitfloor {}", f.id)),
            Op::BinStop | Op::BinIsup => {
                let mut c = self.inside.command(&self.built.bin)?;
                c.args(["firewall", if op == Op::BinStop { "stop" } else { "isup" }]);
                self.process(c)
            }
            Op::BinVersion => {
                let mut c = self.inside.command(&self.built.bin)?;
                c.arg("version");
                self.process(c)
            }
            Op::NftVersion => {
                let mut c = self.inside.command("nft")?;
                c.arg("--version");
                self.process(c)
            }
            Op::NftStart | Op::NftReplace => {
                let file = if op == Op::NftStart {
                    &f.fresh_nft
                } else {
                    &f.replace_nft
                };
                let mut c = self.inside.command("nft")?;
                c.arg("-f").arg(file);
                self.process(c)
            }
            Op::NftDelete | Op::NftList => {
                let verb = if op == Op::NftDelete {
                    "delete"
                } else {
                    "list"
                };
                let mut c = self.inside.command("nft")?;
                c.args([verb, "table", "inet", "bitmask"]);
                self.process(c)
            }
            Op::LibStart | Op::LibReplace => self.helper_op(&format!("start {}", f.id)),
            Op::LibStop => self.helper_op("stop"),
            Op::LibStatus => {
                let a = self.ask("status")?;
                if a.text("up") != Some("true") {
                    return Err("library status: the firewall is not up".into());
                }
                Measured::from_answer(&a)
            }
            Op::FloorAdd => self.helper_op("flooradd"),
            Op::Floor0 => self.helper_op("floor0"),
            Op::FloorSized => self.helper_op(&format!("floor {}", f.id)),
            Op::HookFloor => self.helper_op("hookfloor"),
            Op::IptRestore => self.restore(&f.ipt4, &f.ipt6),
            Op::IptRules | Op::IptRulesRestart => self.steps(&iptables::start(&f.gateways)),
            Op::IptRulesStop => self.steps(&iptables::stop()),
            Op::IptList => {
                let (prog, args) = iptables::isup();
                let mut c = self.inside.command(prog)?;
                c.args(args);
                self.process(c)
            }
        }
    }

    /// One process that must exit 0.
    fn process(&self, cmd: std::process::Command) -> Result<Measured, String> {
        let ran = proc::run_ok(self.inside, cmd, &self.err)?;
        Ok(Measured::processes(&[ran]))
    }

    /// One timed helper command.
    fn helper_op(&mut self, command: &str) -> Result<Measured, String> {
        Measured::from_answer(&self.ask(command)?)
    }

    /// `iptables-restore --noflush` then `ip6tables-restore --noflush`.
    fn restore(&self, v4: &Path, v6: &Path) -> Result<Measured, String> {
        let mut runs = Vec::new();
        for (prog, file) in [("iptables-restore", v4), ("ip6tables-restore", v6)] {
            let mut c = self.inside.command(prog)?;
            c.arg("--noflush").arg(file);
            runs.push(proc::run_ok(self.inside, c, &self.err)?);
        }
        Ok(Measured::processes(&runs))
    }

    /// Runs the original's steps, one process each, deciding on exit codes as it did.
    fn steps(&self, steps: &[Step]) -> Result<Measured, String> {
        let start = Instant::now();
        let mut runs = Vec::new();
        for step in steps {
            let (prog, args) = step.first();
            let first = self.one(prog, &args)?;
            runs.push(first);
            if let Some((prog, args)) = step.second(first.ok()) {
                let second = self.one(prog, &args)?;
                runs.push(second);
                if !second.ok() {
                    let err = std::fs::read_to_string(&self.err).unwrap_or_default();
                    return Err(format!("{prog} {} failed: {}", args.join(" "), err.trim()));
                }
            }
        }
        Ok(Measured {
            wall: start.elapsed(),
            ..Measured::processes(&runs)
        })
    }

    fn one(&self, prog: &str, args: &[String]) -> Result<Ran, String> {
        let mut c = self.inside.command(prog)?;
        c.args(args);
        proc::run(self.inside, c, &self.err)
    }

    /// Processes started per command, counted by strace (one run each).
    fn census(&mut self, f: &Files) -> Result<Vec<Census>, String> {
        let n = f.gateways.len();
        let bin = self.built.bin.to_string_lossy().into_owned();
        let gws: Vec<String> = f.gateways.iter().map(|g| g.to_string()).collect();
        let start_args: Vec<String> = ["firewall".to_string(), "start".to_string()]
            .into_iter()
            .chain(gws)
            .collect();
        let mut out = Vec::new();
        self.ask("reset")?;
        let mut count = |this: &mut Self, what: String, prog: &str, args: &[String]| {
            let execs = proc::count_execs(this.inside, prog, args, &this.dir);
            out.push(Census { what, execs });
        };
        count(
            self,
            format!("bitmask-root firewall start ({n} gw, fresh)"),
            &bin,
            &start_args,
        );
        count(
            self,
            format!("bitmask-root firewall start ({n} gw, while up)"),
            &bin,
            &start_args,
        );
        count(
            self,
            "bitmask-root firewall isup".into(),
            &bin,
            &strings(&["firewall", "isup"]),
        );
        count(
            self,
            "bitmask-root firewall stop".into(),
            &bin,
            &strings(&["firewall", "stop"]),
        );
        if n > 1 {
            self.ask("reset")?;
            return Ok(out);
        }
        let fresh = f.fresh_nft.to_string_lossy().into_owned();
        count(
            self,
            "nft -f (fresh)".into(),
            "nft",
            &strings(&["-f", &fresh]),
        );
        self.ask("reset")?;
        for (what, steps, pre) in [
            (
                format!("iptables per rule: start ({n} gw, from clean)"),
                iptables::start(&f.gateways),
                Pre::Clean,
            ),
            (
                format!("iptables per rule: start while started ({n} gw)"),
                iptables::start(&f.gateways),
                Pre::Iptables,
            ),
            (
                "iptables per rule: stop".to_string(),
                iptables::stop(),
                Pre::Iptables,
            ),
        ] {
            self.establish(pre, f)?;
            let script = self.dir.join("original.sh");
            write(&script, &iptables::script(&steps))?;
            let execs = proc::count_execs(
                self.inside,
                "sh",
                &[script.to_string_lossy().into_owned()],
                &self.dir,
            )
            .map(|e| e.saturating_sub(1));
            out.push(Census { what, execs });
        }
        self.ask("reset")?;
        let ipt4 = f.ipt4.to_string_lossy().into_owned();
        let v4 = proc::count_execs(
            self.inside,
            "iptables-restore",
            &strings(&["--noflush", &ipt4]),
            &self.dir,
        );
        let ipt6 = f.ipt6.to_string_lossy().into_owned();
        let v6 = proc::count_execs(
            self.inside,
            "ip6tables-restore",
            &strings(&["--noflush", &ipt6]),
            &self.dir,
        );
        out.push(Census {
            what: "iptables-restore + ip6tables-restore".into(),
            execs: v4.zip(v6).map(|(a, b)| a + b),
        });
        self.ask("reset")?;
        Ok(out)
    }

    /// Netlink messages and system calls of each command at this gateway count, traced with
    /// strace, for this tree's binary and the "before" one (each from the same state).
    fn traffic(&mut self, f: &Files) -> Result<Vec<Traffic>, String> {
        let n = f.gateways.len();
        let gws: Vec<String> = f.gateways.iter().map(|g| g.to_string()).collect();
        let start: Vec<String> = strings(&["firewall", "start"])
            .into_iter()
            .chain(gws)
            .collect();
        let commands: [(String, Vec<String>, Pre); 4] = [
            (
                format!("firewall start ({n} gw, fresh)"),
                start.clone(),
                Pre::Clean,
            ),
            (
                format!("firewall start ({n} gw, while up)"),
                start,
                Pre::Ours,
            ),
            (
                format!("firewall isup ({n} gw)"),
                strings(&["firewall", "isup"]),
                Pre::Ours,
            ),
            (
                format!("firewall stop ({n} gw)"),
                strings(&["firewall", "stop"]),
                Pre::Ours,
            ),
        ];
        let after = self.built.bin.to_string_lossy().into_owned();
        let before = self
            .built
            .before
            .as_ref()
            .map(|(_, b)| b.to_string_lossy().into_owned());
        let mut out = Vec::new();
        for (what, args, pre) in commands {
            let mut counts = [None, None];
            for (slot, bin) in [Some(&after), before.as_ref()].into_iter().enumerate() {
                let Some(bin) = bin else { continue };
                self.establish(pre, f)?;
                counts[slot] = proc::trace(self.inside, bin, &args, &self.dir);
            }
            out.push(Traffic {
                what: format!("bitmask-root {what}"),
                after: counts[0],
                before: counts[1],
            });
        }
        if n == 1 {
            let fresh = f.fresh_nft.to_string_lossy().into_owned();
            for (what, args, pre) in [
                ("nft -f (1 gw, fresh)", strings(&["-f", &fresh]), Pre::Clean),
                (
                    "nft list table inet bitmask (1 gw)",
                    strings(&["list", "table", "inet", "bitmask"]),
                    Pre::Ours,
                ),
            ] {
                self.establish(pre, f)?;
                out.push(Traffic {
                    what: what.to_string(),
                    before: None,
                    after: proc::trace(self.inside, "nft", &args, &self.dir),
                });
            }
        }
        self.ask("reset")?;
        Ok(out)
    }

    /// The packet rate through the output path: no firewall, ours and the original's rules at
    /// the smallest and largest gateway count, to a gateway (accepted, dropped by the sink) and
    /// to another address (rejected). Rounds interleave the rulesets.
    fn flows(&mut self, groups: &[Group]) -> Result<Vec<Flow>, String> {
        let v4: Vec<usize> = groups
            .iter()
            .filter(|g| g.family == Family::V4)
            .map(|g| g.n)
            .collect();
        let (Some(&lo), Some(&hi)) = (v4.iter().min(), v4.iter().max()) else {
            return Ok(Vec::new());
        };
        let mut configs: Vec<(&'static str, usize)> = vec![("none", 0)];
        for n in if lo == hi { vec![lo] } else { vec![lo, hi] } {
            configs.push(("bitmask-root", n));
            configs.push(("iptables (original rules)", n));
        }
        eprintln!(
            "bench: packet rate, {} rulesets × {} rounds",
            configs.len(),
            self.opts.flood_rounds
        );
        let mut flows: Vec<Flow> = Vec::new();
        let mut delivered: BTreeMap<(usize, bool), Vec<f64>> = BTreeMap::new();
        for &(ruleset, n) in &configs {
            for accepted in [true, false] {
                flows.push(Flow {
                    ruleset,
                    n,
                    accepted,
                    pps: Vec::new(),
                    delivered: 0.0,
                });
            }
        }
        for round in 0..self.opts.flood_rounds {
            for j in 0..configs.len() {
                let i = if round % 2 == 0 {
                    j
                } else {
                    configs.len() - 1 - j
                };
                let (ruleset, n) = configs[i];
                self.flood_setup(ruleset, n)?;
                for accepted in [true, false] {
                    let (pps, frac) = self.flood(accepted)?;
                    let k = 2 * i + usize::from(!accepted);
                    flows[k].pps.push(pps);
                    delivered.entry((k, accepted)).or_default().push(frac);
                }
            }
        }
        for ((k, _), mut fr) in delivered {
            fr.sort_by(f64::total_cmp);
            flows[k].delivered = fr[fr.len() / 2];
        }
        self.ask("reset")?;
        Ok(flows)
    }

    fn flood_setup(&mut self, ruleset: &str, n: usize) -> Result<(), String> {
        self.ask("reset")?;
        let id = format!("v4-{n}");
        match ruleset {
            "none" => Ok(()),
            "bitmask-root" => self.ask(&format!("start {id}")).map(drop),
            _ => {
                let (v4, v6) = (
                    self.dir.join(format!("{id}.ipt4")),
                    self.dir.join(format!("{id}.ipt6")),
                );
                self.restore(&v4, &v6).map(drop)
            }
        }
    }

    /// One bounded flood: (datagrams per second, fraction that left the device).
    fn flood(&mut self, accepted: bool) -> Result<(f64, f64), String> {
        let to = if accepted { TARGET_GW } else { NOT_GW };
        let before = self.inside.tx_packets()?;
        let a = self.ask(&format!(
            "flood {to} 9 {} {}",
            self.opts.flood_packets, self.opts.flood_ms
        ))?;
        let after = self.inside.tx_packets()?;
        let tried = (a.num("sent")? + a.num("errors")?) as f64;
        let secs = a.elapsed()?.as_secs_f64();
        let left = after.saturating_sub(before) as f64;
        Ok((
            tried / secs.max(1e-9),
            if tried > 0.0 { left / tried } else { 0.0 },
        ))
    }

    /// The size of a stripped copy of the binary, when `strip` is installed.
    fn stripped_size(&self) -> Option<u64> {
        let copy = self.dir.join("bitmask-root.stripped");
        std::fs::copy(&self.built.bin, &copy).ok()?;
        let ok = std::process::Command::new("strip")
            .arg(&copy)
            .status()
            .ok()?
            .success();
        let size = std::fs::metadata(&copy).ok()?.len();
        ok.then_some(size)
    }
}

/// Text with every run of white space made one space.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The gateways of a group: IPv4 from the benchmarking range 198.18.0.0/15 with the flood's
/// target 203.0.113.10 last (so the original's rule for it is its last gateway rule), IPv6
/// from 2001:db8:1::/48.
pub fn gateways(family: Family, n: usize) -> Vec<IpAddr> {
    let n4 = match family {
        Family::V4 => n,
        Family::Mix => n - n / 2,
    };
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 1));
    let mut v: Vec<IpAddr> = (0..n4.saturating_sub(1) as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
        .collect();
    v.push(IpAddr::V4(
        TARGET_GW.parse().unwrap_or(Ipv4Addr::new(203, 0, 113, 10)),
    ));
    let base6 = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
    v.extend((0..(n - n4) as u128).map(|i| IpAddr::V6(Ipv6Addr::from(base6 + i))));
    v
}

/// The `--dry-run` text as `nft -f` input: nft (1.0.6) refuses a comment longer than 128
/// characters, which the kernel and our batch allow (up to 256 bytes), so the table comment
/// is cut there; the rules are the same.
fn nft_input(dry: &str) -> String {
    const NFT_COMMENT_MAX: usize = 128;
    let mut out = String::with_capacity(dry.len());
    for line in dry.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match body
            .strip_prefix("comment \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            Some(text) if text.chars().count() > NFT_COMMENT_MAX => {
                let cut: String = text.chars().take(NFT_COMMENT_MAX).collect();
                out.push_str(&format!("{indent}comment \"{cut}\""));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_lists() {
        let g = gateways(Family::V4, 3);
        assert_eq!(g.len(), 3);
        assert_eq!(g[2].to_string(), TARGET_GW);
        let m = gateways(Family::Mix, 5);
        assert_eq!(m.iter().filter(|g| g.is_ipv4()).count(), 3);
        assert_eq!(m.iter().filter(|g| g.is_ipv6()).count(), 2);
        let big = gateways(Family::V4, 16_384);
        let unique: std::collections::BTreeSet<_> = big.iter().collect();
        assert_eq!(unique.len(), 16_384);
    }
}
