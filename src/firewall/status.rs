//! Status: is the VPN firewall up, and is it still what was applied for this network?

use std::fmt;

use crate::discovery::{self, Network};
use crate::error::Error;
use crate::nft::lock::NamespaceLock;
use crate::plan::{self, gateway_set_name, Family};
use crate::policy::{Mode, Policy, PolicyError};
use crate::readback::{self, KernelTable};

/// The state of the VPN firewall as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Our table is there, untouched, and matches the plan for the network as it is now.
    Up(Policy),
    /// Our table is not there.
    Down,
    /// Our table is untouched but the network changed since start (a new interface or prefix,
    /// or with `--compat` a new default device): start again to re-plan.
    Stale {
        /// The policy recorded at start.
        policy: Policy,
        /// What changed.
        reason: String,
    },
    /// Our table was changed out of band (flushed chain, deleted rule, edited set, ...).
    Tampered {
        /// What differs.
        reason: String,
    },
}

impl Status {
    /// Whether the firewall is up and intact.
    pub fn is_up(&self) -> bool {
        matches!(self, Status::Up(_))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compat = |p: &Policy| match (p.profile(), p.forward()) {
            (crate::policy::Profile::Compat, _) => ", LEAKY --compat profile",
            (_, true) => "",
            (_, false) => ", forwarded traffic NOT filtered (--forward off)",
        };
        match self {
            Status::Up(p) if p.mode() == Mode::Block => write!(
                f,
                "firewall is up, blocked (no gateway, DNS to {} through the tunnel only, LAN {}{})",
                p.resolver(),
                p.lan(),
                compat(p)
            ),
            Status::Up(p) => write!(
                f,
                "firewall is up ({} gateway{}, DNS to {}, LAN {}{})",
                p.gateways().len(),
                if p.gateways().len() == 1 { "" } else { "s" },
                p.resolver(),
                p.lan(),
                compat(p)
            ),
            Status::Down => write!(f, "firewall is down (no table inet {})", plan::TABLE),
            Status::Stale { reason, .. } => write!(
                f,
                "firewall is stale: the network changed since start ({reason}); run firewall start again"
            ),
            Status::Tampered { reason } => write!(
                f,
                "firewall was changed by another program ({reason}); run firewall start again to restore it"
            ),
        }
    }
}

/// Reads the firewall's state in the calling thread's namespace, holding its command lock (so
/// no start or stop of ours runs meanwhile) and reading the table at one generation.
pub async fn status() -> Result<Status, Error> {
    let _lock = NamespaceLock::acquire()?;
    let Some(kernel) = readback::read_table(plan::TABLE)? else {
        return Ok(Status::Down);
    };
    let net = discovery::discover().await?;
    judge(&kernel, &net)
}

/// Judges a table read back against the plan for `net`. Pure apart from encoding.
pub fn judge(kernel: &KernelTable, net: &Network) -> Result<Status, Error> {
    let tampered = |reason: &str| {
        Ok(Status::Tampered {
            reason: reason.to_string(),
        })
    };
    let Some(comment) = kernel.comment.as_deref() else {
        return tampered("its comment is missing");
    };
    let Some((record, stored)) = readback::split_comment(comment) else {
        return tampered("its comment is not bitmask-root's");
    };
    let Some(builder) = plan::parse_record(record) else {
        return tampered("its comment is not bitmask-root's");
    };
    let mut gateways = Vec::new();
    for fam in [Family::V4, Family::V6] {
        if let Some(v) = kernel.set_elements.get(gateway_set_name(fam)) {
            gateways.extend(v.iter().copied());
        }
    }
    let policy = match builder.gateways(gateways).build() {
        Ok(policy) => policy,
        Err(PolicyError::NoGateway) => return tampered("its gateway sets are empty"),
        Err(PolicyError::GatewayWhileBlocking(_)) => {
            return tampered("it blocks, yet holds gateways")
        }
        Err(_) => return tampered("its gateway sets hold addresses it would never apply"),
    };
    let now = plan::plan(&policy, net);
    let actual = kernel.snapshot.fingerprint();
    if actual != stored {
        let reason = match &now {
            Ok(rs) => kernel
                .snapshot
                .describe_difference(&readback::snapshot_of(rs)?),
            Err(_) => "its rules differ from what was applied".to_string(),
        };
        return Ok(Status::Tampered { reason });
    }
    let rs = match now {
        Ok(rs) => rs,
        Err(e) => {
            return Ok(Status::Stale {
                policy,
                reason: e.to_string(),
            })
        }
    };
    let planned = readback::snapshot_of(&rs)?;
    if planned.fingerprint() != stored {
        let reason = stale_reason(&kernel.snapshot, &planned, &rs);
        return Ok(Status::Stale { policy, reason });
    }
    Ok(Status::Up(policy))
}

/// Says, in nft syntax, which rules the network as it is now needs that the running table
/// lacks, and how many of the running rules no longer apply.
fn stale_reason(
    kernel: &readback::Snapshot,
    planned: &readback::Snapshot,
    rs: &plan::Ruleset,
) -> String {
    let mut needed = Vec::new();
    let mut obsolete = 0;
    for chain in &rs.chains {
        let (Some((_, want)), Some((_, have))) = (
            planned.chains.get(&chain.name),
            kernel.chains.get(&chain.name),
        ) else {
            continue;
        };
        for (rule, canon) in chain.rules.iter().zip(want) {
            if !have.contains(canon) {
                needed.push(crate::render::rule_text(rule));
            }
        }
        obsolete += have.iter().filter(|r| !want.contains(r)).count();
    }
    if needed.is_empty() && obsolete == 0 {
        return kernel.describe_difference(planned);
    }
    let mut parts = Vec::new();
    if let Some(first) = needed.first() {
        let more = match needed.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        parts.push(format!("it now needs `{first}`{more}"));
    }
    if obsolete > 0 {
        parts.push(format!(
            "{obsolete} running rule{} no longer appl{}",
            if obsolete == 1 { "" } else { "s" },
            if obsolete == 1 { "ies" } else { "y" }
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Interface, Prefix};
    use crate::readback::KernelTable;

    fn net(prefixes: &[(&str, u8)]) -> Network {
        Network {
            interfaces: vec![Interface {
                name: "eth0".into(),
                index: 2,
                prefixes: prefixes
                    .iter()
                    .map(|(a, l)| Prefix::new(a.parse().unwrap(), *l))
                    .collect(),
            }],
            default_v4: Some("eth0".into()),
            default_v6: None,
            ipv6: true,
        }
    }

    /// What the kernel would hold after applying the plan of `policy` on `n`.
    fn applied(policy: &Policy, n: &Network) -> KernelTable {
        let rs = plan::plan(policy, n).unwrap();
        let (comment, _) = crate::engine::comment_of(&rs).unwrap();
        let set_elements = rs
            .sets
            .iter()
            .map(|s| (s.name.clone(), s.elements.clone()))
            .collect();
        KernelTable {
            comment: Some(comment),
            snapshot: readback::snapshot_of(&rs).unwrap(),
            set_elements,
        }
    }

    #[test]
    fn up_stale_and_tampered() {
        let policy = Policy::builder()
            .gateway("198.51.100.7".parse().unwrap())
            .build()
            .unwrap();
        let home = net(&[("192.168.1.2", 24)]);
        let kernel = applied(&policy, &home);
        assert_eq!(judge(&kernel, &home).unwrap(), Status::Up(policy.clone()));

        let cafe = net(&[("10.9.0.2", 24)]);
        match judge(&kernel, &cafe).unwrap() {
            Status::Stale { reason, .. } => {
                assert!(
                    reason.contains(r#"oifname "eth0" ip daddr 10.9.0.0/24 accept"#),
                    "{reason}"
                );
                // One LAN rule in the output chain and one in the forward chain.
                assert!(reason.contains("and 1 more"), "{reason}");
                assert!(
                    reason.contains("2 running rules no longer apply"),
                    "{reason}"
                );
            }
            other => panic!("expected stale, got {other}"),
        }

        let mut flushed = kernel.clone();
        if let Some(chain) = flushed.snapshot.chains.get_mut(plan::CHAIN_OUTPUT) {
            chain.1.clear();
        }
        assert!(matches!(
            judge(&flushed, &home).unwrap(),
            Status::Tampered { .. }
        ));

        let mut no_forward = kernel.clone();
        if let Some(chain) = no_forward
            .snapshot
            .chains
            .get_mut(crate::firewall::forward::CHAIN_FORWARD)
        {
            chain.1.clear();
        }
        match judge(&no_forward, &home).unwrap() {
            Status::Tampered { reason } => {
                assert!(reason.contains("chain forward holds 0 rules"), "{reason}")
            }
            other => panic!("expected tampered, got {other}"),
        }
        let mut emptied = kernel.clone();
        emptied.set_elements.clear();
        assert_eq!(
            judge(&emptied, &home).unwrap(),
            Status::Tampered {
                reason: "its gateway sets are empty".into()
            },
            "a connecting table without gateways is not taken for a blocking one"
        );

        let mut foreign = kernel.clone();
        foreign.comment = Some("somebody else's table".into());
        assert!(matches!(
            judge(&foreign, &home).unwrap(),
            Status::Tampered { .. }
        ));
    }

    #[test]
    fn a_blocking_table_is_up_and_says_so() {
        let policy = Policy::builder().mode(Mode::Block).build().unwrap();
        let home = net(&[("192.168.1.2", 24)]);
        let kernel = applied(&policy, &home);
        let status = judge(&kernel, &home).unwrap();
        assert_eq!(status, Status::Up(policy.clone()));
        assert_eq!(
            status.to_string(),
            "firewall is up, blocked (no gateway, DNS to 10.42.0.1 through the tunnel only, LAN private)"
        );
        // Re-planned like any other: a new LAN makes it stale, not tampered.
        let cafe = net(&[("10.9.0.2", 24)]);
        assert!(matches!(
            judge(&kernel, &cafe).unwrap(),
            Status::Stale { .. }
        ));
        // A gateway slipped into a blocking table.
        let mut slipped = kernel.clone();
        slipped
            .set_elements
            .insert("gateways4".into(), vec!["198.51.100.7".parse().unwrap()]);
        assert!(matches!(
            judge(&slipped, &home).unwrap(),
            Status::Tampered { .. }
        ));
    }
}
