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

/// A listing with every counter as a fresh table shows it (`counter packets 0 bytes 0`): what
/// the kernel counted since the table was applied is traffic, not rules, and the namespace's
/// own packets (an IGMP report of a new bridge, say) may be counted at any moment.
pub fn fresh_counters(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    let mut rest = listing;
    while let Some(at) = rest.find("counter packets ") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let words: Vec<&str> = rest.splitn(5, ' ').collect();
        match words.as_slice() {
            ["counter", "packets", p, "bytes", tail] if p.chars().all(|c| c.is_ascii_digit()) => {
                let digits = tail.chars().take_while(char::is_ascii_digit).count();
                if digits == 0 {
                    out.push_str("counter packets ");
                    rest = &rest["counter packets ".len()..];
                    continue;
                }
                out.push_str("counter packets 0 bytes 0");
                rest = &tail[digits..];
            }
            _ => {
                out.push_str("counter packets ");
                rest = &rest["counter packets ".len()..];
            }
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::fresh_counters;

    #[test]
    fn counters_read_as_fresh() {
        assert_eq!(
            fresh_counters("\t\tudp dport 53 counter packets 12 bytes 840 drop\n\t\tcounter packets 0 bytes 0 reject\n"),
            "\t\tudp dport 53 counter packets 0 bytes 0 drop\n\t\tcounter packets 0 bytes 0 reject\n"
        );
        assert_eq!(fresh_counters("no counters here"), "no counters here");
        assert_eq!(
            fresh_counters("counter packets x bytes 1"),
            "counter packets x bytes 1"
        );
    }
}
