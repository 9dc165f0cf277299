//! Reading and changing the nftables ruleset of a namespace (never the machine's own:
//! every call goes through [`Netns::command`], which checks).

use crate::cmd;
use crate::error::{Error, Result};
use crate::netns::Netns;

/// `nft list ruleset` in `ns`.
pub fn ruleset(ns: &Netns) -> Result<String> {
    ns.exec_ok("nft", &["list", "ruleset"])
}

/// `nft -s list ruleset` (without counters and quotas, so it compares across traffic).
pub fn ruleset_stateless(ns: &Netns) -> Result<String> {
    ns.exec_ok("nft", &["-s", "list", "ruleset"])
}

/// `nft list table FAMILY NAME`, or `None` if that table does not exist.
pub fn table(ns: &Netns, family: &str, name: &str) -> Result<Option<String>> {
    let out = ns.exec("nft", &["list", "table", family, name])?;
    if out.success() {
        Ok(Some(out.stdout))
    } else if out.stderr.contains("No such file or directory") {
        Ok(None)
    } else {
        Err(Error::new(format!(
            "nft list table {family} {name}: {}",
            out.stderr.trim()
        )))
    }
}

/// The tables in `ns` as `family name` strings.
pub fn tables(ns: &Netns) -> Result<Vec<String>> {
    Ok(ns
        .exec_ok("nft", &["list", "tables"])?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table "))
        .map(str::to_string)
        .collect())
}

/// Loads an nft script (`nft -f -`) into `ns`.
pub fn apply(ns: &Netns, script: &str) -> Result<()> {
    let mut c = ns.command("nft")?;
    c.args(["-f", "-"]);
    let out = cmd::run(c, Some(script.as_bytes()), cmd::DEFAULT_TIMEOUT)?;
    if out.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "nft -f in {}: {}\n{script}",
            ns.name(),
            out.stderr.trim()
        )))
    }
}

/// Runs `nft ARGS` in `ns`; fails unless it exits 0.
pub fn nft(ns: &Netns, args: &[&str]) -> Result<String> {
    ns.exec_ok("nft", args)
}
