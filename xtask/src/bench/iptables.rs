//! The original's way: the rules of the seed listing (reference B2), built with one
//! `iptables`/`ip6tables` process per rule and the `--check` calls the original made before
//! each change (reference A3-A5), and the same rules as one `iptables-restore` plus one
//! `ip6tables-restore` input.
//!
//! Process counts reproduce the reference's B3: a start from clean runs 4 lists, 20 + 2·N
//! checks and 24 + 2·N changes; a start while started 4 lists and 20 + 2·N checks; a stop 4
//! checks and 12 changes.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::lab::{DEV, LAN4, LAN6};

/// The resolver DNS is rewritten to (the same as our default).
const RESOLVER: &str = "10.42.0.1";

/// One step of the original's shell-out sequence.
#[derive(Debug, Clone)]
pub enum Step {
    /// `--list CHAIN --numeric`; when it fails, `--new-chain CHAIN`.
    ListOrCreate {
        prog: &'static str,
        table: &'static str,
        chain: &'static str,
    },
    /// `-C SPEC`; when it fails, `VERB SPEC` (`-A` or `-I`).
    CheckThenAdd {
        prog: &'static str,
        table: &'static str,
        verb: &'static str,
        spec: Vec<String>,
    },
    /// `-C SPEC`; when it succeeds, `-D SPEC`.
    CheckThenDelete {
        prog: &'static str,
        table: &'static str,
        spec: Vec<String>,
    },
    /// A command run as it is (`-F`, `-X`).
    Plain {
        prog: &'static str,
        table: &'static str,
        args: Vec<String>,
    },
}

/// One process to start: program and arguments.
pub type Argv = (&'static str, Vec<String>);

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn with_table(table: &str, rest: Vec<String>) -> Vec<String> {
    let mut v = vec!["-t".to_string(), table.to_string()];
    v.extend(rest);
    v
}

impl Step {
    /// The first process of the step.
    pub fn first(&self) -> Argv {
        match self {
            Step::ListOrCreate { prog, table, chain } => (
                prog,
                with_table(table, words(&format!("--list {chain} --numeric"))),
            ),
            Step::CheckThenAdd {
                prog, table, spec, ..
            }
            | Step::CheckThenDelete { prog, table, spec } => {
                let mut v = vec!["-C".to_string()];
                v.extend(spec.iter().cloned());
                (prog, with_table(table, v))
            }
            Step::Plain { prog, table, args } => (prog, with_table(table, args.clone())),
        }
    }

    /// The second process, given whether the first succeeded.
    pub fn second(&self, first_ok: bool) -> Option<Argv> {
        match self {
            Step::ListOrCreate { prog, table, chain } if !first_ok => Some((
                prog,
                with_table(table, words(&format!("--new-chain {chain}"))),
            )),
            Step::CheckThenAdd {
                prog,
                table,
                verb,
                spec,
            } if !first_ok => {
                let mut v = vec![verb.to_string()];
                v.extend(spec.iter().cloned());
                Some((prog, with_table(table, v)))
            }
            Step::CheckThenDelete { prog, table, spec } if first_ok => {
                let mut v = vec!["-D".to_string()];
                v.extend(spec.iter().cloned());
                Some((prog, with_table(table, v)))
            }
            _ => None,
        }
    }

    /// The step as a shell line (for counting processes with strace).
    pub fn shell(&self) -> String {
        let quote = |(p, a): Argv| format!("{p} {}", a.join(" "));
        let first = quote(self.first());
        match self {
            Step::ListOrCreate { .. } | Step::CheckThenAdd { .. } => {
                let second = self.second(false).map(quote).unwrap_or_default();
                format!("{first} >/dev/null 2>&1 || {second}")
            }
            Step::CheckThenDelete { .. } => {
                let second = self.second(true).map(quote).unwrap_or_default();
                format!("{first} >/dev/null 2>&1 && {second}")
            }
            Step::Plain { .. } => first,
        }
    }
}

fn add(prog: &'static str, table: &'static str, verb: &'static str, spec: &str) -> Step {
    Step::CheckThenAdd {
        prog,
        table,
        verb,
        spec: words(spec),
    }
}

fn v4_gateways(gws: &[IpAddr]) -> Vec<String> {
    gws.iter()
        .filter(|g| g.is_ipv4())
        .map(|g| g.to_string())
        .collect()
}

/// `firewall start GW...` from clean, in the original's order (IPv6 gateways are dropped, as
/// the original did).
pub fn start(gws: &[IpAddr]) -> Vec<Step> {
    let gws = v4_gateways(gws);
    let mut s = vec![
        Step::ListOrCreate {
            prog: "iptables",
            table: "filter",
            chain: "bitmask",
        },
        Step::ListOrCreate {
            prog: "iptables",
            table: "nat",
            chain: "bitmask",
        },
        Step::ListOrCreate {
            prog: "iptables",
            table: "nat",
            chain: "bitmask_postrouting",
        },
        Step::ListOrCreate {
            prog: "ip6tables",
            table: "filter",
            chain: "bitmask",
        },
        add("iptables", "nat", "-I", "OUTPUT -j bitmask"),
        add(
            "iptables",
            "nat",
            "-I",
            "POSTROUTING -j bitmask_postrouting",
        ),
        add("iptables", "filter", "-I", "OUTPUT -j bitmask"),
        add("ip6tables", "filter", "-I", "OUTPUT -j bitmask"),
    ];
    for gw in &gws {
        s.push(add(
            "iptables",
            "nat",
            "-A",
            &format!("bitmask -d {gw} -j RETURN"),
        ));
    }
    let ns = RESOLVER;
    s.extend([
        add(
            "iptables",
            "nat",
            "-A",
            "bitmask -p udp -d 127.0.1.1,127.0.0.1,127.0.0.53 --dport 53 -j ACCEPT",
        ),
        add(
            "iptables",
            "nat",
            "-A",
            &format!("bitmask -p udp --dport 53 -j DNAT --to {ns}:53"),
        ),
        add(
            "iptables",
            "nat",
            "-A",
            &format!("bitmask -p tcp --dport 53 -j DNAT --to {ns}:53"),
        ),
        add(
            "iptables",
            "nat",
            "-A",
            &format!("bitmask_postrouting -d {ns} -p udp --dport 53 -j MASQUERADE"),
        ),
        add(
            "iptables",
            "nat",
            "-A",
            &format!("bitmask_postrouting -d {ns} -p tcp --dport 53 -j MASQUERADE"),
        ),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -d {LAN4} -o {DEV} -j ACCEPT"),
        ),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -s {LAN4} -o {DEV} -p udp --dport 53 -j ACCEPT"),
        ),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -s {LAN4} -o {DEV} -p tcp --dport 53 -j ACCEPT"),
        ),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -p udp -d 239.255.255.250 --dport 1900 -o {DEV} -j RETURN"),
        ),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -p udp -d 224.0.0.251 --dport 5353 -o {DEV} -j RETURN"),
        ),
        add(
            "ip6tables",
            "filter",
            "-A",
            &format!("bitmask -d {LAN6} -o {DEV} -j ACCEPT"),
        ),
        add(
            "ip6tables",
            "filter",
            "-A",
            &format!("bitmask -p udp -d ff05::c --dport 1900 -o {DEV} -j RETURN"),
        ),
        add(
            "ip6tables",
            "filter",
            "-A",
            &format!("bitmask -p udp -d ff02::fb --dport 5353 -o {DEV} -j RETURN"),
        ),
    ]);
    for gw in &gws {
        s.push(add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -d {gw} -o {DEV} -j ACCEPT"),
        ));
    }
    s.extend([
        add("ip6tables", "filter", "-A", "bitmask -p tcp -j REJECT"),
        add("ip6tables", "filter", "-A", "bitmask -p udp -j REJECT"),
        add(
            "iptables",
            "filter",
            "-A",
            &format!("bitmask -o {DEV} -j REJECT"),
        ),
    ]);
    s
}

/// `firewall stop`: unhook (check, then delete), then flush and delete the four chains.
pub fn stop() -> Vec<Step> {
    let del = |prog, table, spec: &str| Step::CheckThenDelete {
        prog,
        table,
        spec: words(spec),
    };
    let plain = |prog, table, args: &str| Step::Plain {
        prog,
        table,
        args: words(args),
    };
    vec![
        del("iptables", "filter", "OUTPUT -j bitmask"),
        del("ip6tables", "filter", "OUTPUT -j bitmask"),
        del("iptables", "nat", "OUTPUT -j bitmask"),
        del("iptables", "nat", "POSTROUTING -j bitmask_postrouting"),
        plain("iptables", "filter", "-F bitmask"),
        plain("iptables", "filter", "-X bitmask"),
        plain("iptables", "nat", "-F bitmask"),
        plain("iptables", "nat", "-X bitmask"),
        plain("iptables", "nat", "-F bitmask_postrouting"),
        plain("iptables", "nat", "-X bitmask_postrouting"),
        plain("ip6tables", "filter", "-F bitmask"),
        plain("ip6tables", "filter", "-X bitmask"),
    ]
}

/// `firewall isup`: one `iptables --list bitmask --numeric`.
pub fn isup() -> Argv {
    ("iptables", words("--list bitmask --numeric"))
}

/// A shell script running `steps` as the original did (for strace).
pub fn script(steps: &[Step]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for step in steps {
        let _ = writeln!(s, "{}", step.shell());
    }
    s
}

/// The `iptables-restore --noflush` input for IPv4: the B2 listing with every gateway.
pub fn restore_v4(gws: &[IpAddr]) -> String {
    let gws = v4_gateways(gws);
    let mut s = String::from("*filter\n:bitmask - [0:0]\n-I OUTPUT 1 -j bitmask\n");
    let _ = writeln!(s, "-A bitmask -d {LAN4} -o {DEV} -j ACCEPT");
    for proto in ["udp", "tcp"] {
        let _ = writeln!(
            s,
            "-A bitmask -s {LAN4} -o {DEV} -p {proto} -m {proto} --dport 53 -j ACCEPT"
        );
    }
    let _ = writeln!(
        s,
        "-A bitmask -d 239.255.255.250/32 -o {DEV} -p udp -m udp --dport 1900 -j RETURN"
    );
    let _ = writeln!(
        s,
        "-A bitmask -d 224.0.0.251/32 -o {DEV} -p udp -m udp --dport 5353 -j RETURN"
    );
    for gw in &gws {
        let _ = writeln!(s, "-A bitmask -d {gw}/32 -o {DEV} -j ACCEPT");
    }
    let _ = writeln!(
        s,
        "-A bitmask -o {DEV} -j REJECT --reject-with icmp-port-unreachable\nCOMMIT"
    );
    s.push_str("*nat\n:bitmask - [0:0]\n:bitmask_postrouting - [0:0]\n");
    s.push_str("-I OUTPUT 1 -j bitmask\n-I POSTROUTING 1 -j bitmask_postrouting\n");
    for gw in &gws {
        let _ = writeln!(s, "-A bitmask -d {gw}/32 -j RETURN");
    }
    for local in ["127.0.1.1", "127.0.0.1", "127.0.0.53"] {
        let _ = writeln!(
            s,
            "-A bitmask -d {local}/32 -p udp -m udp --dport 53 -j ACCEPT"
        );
    }
    for proto in ["udp", "tcp"] {
        let _ = writeln!(
            s,
            "-A bitmask -p {proto} -m {proto} --dport 53 -j DNAT --to-destination {RESOLVER}:53"
        );
    }
    for proto in ["udp", "tcp"] {
        let _ = writeln!(
            s,
            "-A bitmask_postrouting -d {RESOLVER}/32 -p {proto} -m {proto} --dport 53 -j MASQUERADE"
        );
    }
    s.push_str("COMMIT\n");
    s
}

/// The `ip6tables-restore --noflush` input (B2's IPv6 part).
pub fn restore_v6() -> String {
    let mut s = String::from("*filter\n:bitmask - [0:0]\n-I OUTPUT 1 -j bitmask\n");
    let _ = writeln!(s, "-A bitmask -d {LAN6} -o {DEV} -j ACCEPT");
    let _ = writeln!(
        s,
        "-A bitmask -d ff05::c/128 -o {DEV} -p udp -m udp --dport 1900 -j RETURN"
    );
    let _ = writeln!(
        s,
        "-A bitmask -d ff02::fb/128 -o {DEV} -p udp -m udp --dport 5353 -j RETURN"
    );
    for proto in ["tcp", "udp"] {
        let _ = writeln!(
            s,
            "-A bitmask -p {proto} -j REJECT --reject-with icmp6-port-unreachable"
        );
    }
    s.push_str("COMMIT\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processes(steps: &[Step], first_ok: bool) -> usize {
        steps
            .iter()
            .map(|s| 1 + usize::from(s.second(first_ok).is_some()))
            .sum()
    }

    #[test]
    fn counts_match_the_reference_b3() {
        for n in [1usize, 50] {
            let gws: Vec<IpAddr> = (0..n)
                .map(|i| IpAddr::from([198, 18, 0, i as u8 + 1]))
                .collect();
            // From clean every list and check fails: 4 lists + 4 creates, 20+2N checks + 20+2N
            // adds; B3's 56 + 4N also counts python, the sysctl pipeline and 3 `ip` calls (8).
            assert_eq!(processes(&start(&gws), false), 56 + 4 * n - 8);
            // While started every list and check succeeds: 4 + 20 + 2N.
            assert_eq!(processes(&start(&gws), true), 24 + 2 * n);
        }
        // Stop with the firewall up: 4 checks + 4 deletes + 8 flush/delete-chain.
        assert_eq!(processes(&stop(), true), 16);
    }
}
