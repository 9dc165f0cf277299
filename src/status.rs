//! Status: is the VPN firewall up, and is it still what was applied for this network?

use std::fmt;

use crate::discovery::{self, Network};
use crate::error::Error;
use crate::plan::{self, gateway_set_name, Family};
use crate::policy::Policy;
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
        match self {
            Status::Up(p) => write!(
                f,
                "firewall is up ({} gateway{}, DNS to {}, LAN {}{})",
                p.gateways().len(),
                if p.gateways().len() == 1 { "" } else { "s" },
                p.resolver(),
                p.lan(),
                match p.profile() {
                    crate::policy::Profile::Default => "",
                    crate::policy::Profile::Compat => ", LEAKY --compat profile",
                }
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

/// Reads the firewall's state in the calling thread's namespace.
pub async fn status() -> Result<Status, Error> {
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
    let Ok(policy) = builder.gateways(gateways).build() else {
        return tampered("its gateway sets are empty");
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
        let reason = kernel.snapshot.describe_difference(&planned);
        return Ok(Status::Stale { policy, reason });
    }
    Ok(Status::Up(policy))
}
