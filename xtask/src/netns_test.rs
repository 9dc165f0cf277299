//! `cargo xtask netns-test`: runs the leak matrix (`netns-tests/tests/leak_matrix.rs` and
//! its forwarding classes, `netns-tests/tests/forward.rs`) against a built `bitmask-root`, prints one line per case and a summary line, and writes
//! the markdown report `docs/leak-matrix.md`.
//!
//! The tests append one JSON object per case to the file named by `LEAK_REPORT_JSONL`
//! (flat: string and integer values only); this module reads it back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The test files that hold leak-matrix cases.
pub const MATRIX_FILES: [&str; 2] = ["leak_matrix", "forward"];

/// The cases of issue 3 (1-14), issue 9 (15-19) and issue 10 (20-24), by number: (number,
/// test function).
const CASES: [(u32, &str); 24] = [
    (1, "case01_internet_blocked_on_default_uplink"),
    (2, "case02_gateway_lan_and_multicast_allowed"),
    (3, "case03_dns_only_to_vpn_resolver_through_tunnel"),
    (4, "case04_ipv6"),
    (5, "case05_second_uplink_and_bound_sockets"),
    (6, "case06_tunnel_traffic_arrives"),
    (7, "case07_replacement_under_load"),
    (8, "case08_crash_atomicity"),
    (9, "case09_coexistence"),
    (10, "case10_bad_input"),
    (11, "case11_isup"),
    (12, "case12_lan_off"),
    (13, "case13_compat_leaks_documented"),
    (14, "case14_no_process_started"),
    (
        15,
        "case15_dns_to_the_lan_router_answered_through_the_tunnel",
    ),
    (
        16,
        "case16_desktop_stub_resolver_forwarding_to_the_lan_router",
    ),
    (17, "case17_resolver_routed_outside_the_tunnel"),
    (18, "case18_second_uplink_dns"),
    (19, "case19_dns_with_the_tunnel_down"),
    (20, "case20_forwarded_traffic_blocked_outside_the_tunnel"),
    (21, "case21_forwarded_dns"),
    (22, "case22_forwarded_lan_port_forward_and_bridges"),
    (23, "case23_forwarded_flood_during_start_replace_stop"),
    (24, "case24_forwarding_coexistence_isup_and_opt_outs"),
];

/// One case as reported by the tests.
#[derive(Debug, Default, Clone)]
struct CaseResult {
    case: u32,
    name: String,
    expectation: String,
    result: String,
    seen: String,
    checks: String,
    ms: u64,
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Runs the leak matrix with `bin` as the binary under test, prints the results and writes
/// `docs/leak-matrix.md`. Fails if any case failed or did not report.
pub fn run(bin: &Path) -> Result<(), String> {
    if !bin.is_file() {
        return Err(format!("{} does not exist: build it first", bin.display()));
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let jsonl = target.join("leak-matrix.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    // Test a snapshot, so that a concurrent `cargo build` replacing the binary cannot make
    // cases fail half-way.
    let snap_dir = target.join("leak-matrix-bin");
    std::fs::create_dir_all(&snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    let snap = snap_dir.join("bitmask-root");
    let _ = std::fs::remove_file(&snap);
    std::fs::copy(bin, &snap)
        .map_err(|e| format!("copying {} to {}: {e}", bin.display(), snap.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["test", "-p", "netns-tests"])
        .args(MATRIX_FILES.iter().flat_map(|f| ["--test", f]))
        .args(["--", "--test-threads=2"])
        .env("BITMASK_ROOT_BIN", &snap)
        .env("LEAK_REPORT_JSONL", &jsonl)
        .status()
        .map_err(|e| format!("could not run {cargo} test: {e}"))?;
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let mut by_case: BTreeMap<u32, CaseResult> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r = parse_line(line).ok_or_else(|| format!("malformed report line: {line}"))?;
        by_case.insert(r.case, r);
    }
    for (n, test) in CASES {
        by_case.entry(n).or_insert_with(|| CaseResult {
            case: n,
            name: test.to_string(),
            expectation: "(see the test)".into(),
            result: "NO REPORT".into(),
            ..Default::default()
        });
    }

    println!();
    println!("leak matrix ({} s):", elapsed.as_secs());
    let (mut passed, mut failed) = (0, 0);
    for r in by_case.values() {
        if r.result == "PASS" {
            passed += 1;
        } else {
            failed += 1;
        }
        println!("  {:>2}. {:<4} {} ({} ms)", r.case, r.result, r.name, r.ms);
        if r.result != "PASS" {
            for c in r.checks.split("; ").filter(|c| c.starts_with("FAILED")) {
                println!("        {c}");
            }
        }
    }
    println!("leak-matrix: {passed} passed, {failed} failed");

    let md = markdown(&by_case, passed, failed, elapsed.as_secs());
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
    let out = docs.join("leak-matrix.md");
    std::fs::write(&out, md).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("report written to {}", out.display());

    if failed > 0 || !status.success() {
        Err(format!(
            "leak matrix: {failed} case(s) did not pass (cargo test: {status})"
        ))
    } else {
        Ok(())
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

fn markdown(cases: &BTreeMap<u32, CaseResult>, passed: usize, failed: usize, secs: u64) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Leak matrix\n");
    let _ = writeln!(
        m,
        "Generated by `cargo xtask netns-test`: every case runs the real `bitmask-root` in a \
         throw-away network namespace and sends real packets; arrivals are counted where they \
         land (listeners and wire taps in the receiving namespaces). Harness and guide: \
         [`netns-tests/`](../netns-tests/README.md); tests: \
         [`netns-tests/tests/leak_matrix.rs`](../netns-tests/tests/leak_matrix.rs), \
         [`netns-tests/tests/forward.rs`](../netns-tests/tests/forward.rs) (forwarded traffic: \
         containers and VMs).\n"
    );
    let _ = writeln!(m, "**{passed} passed, {failed} failed** (in {secs} s).\n");
    let _ = writeln!(m, "| # | case | expectation | result | packets seen |");
    let _ = writeln!(m, "|---|------|-------------|--------|--------------|");
    for r in cases.values() {
        let result = if r.result == "PASS" {
            "PASS".to_string()
        } else {
            format!("**{}**", r.result)
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} |",
            r.case,
            cell(&r.name),
            cell(&r.expectation),
            result,
            cell(&r.seen.replace("; ", "<br>"))
        );
    }
    let _ = writeln!(m, "\n## Checks\n");
    for r in cases.values() {
        let _ = writeln!(m, "### {}. {} ({})\n", r.case, r.name, r.result);
        for c in r.checks.split("; ").filter(|c| !c.is_empty()) {
            let _ = writeln!(m, "- {c}");
        }
        let _ = writeln!(m);
    }
    m
}

/// Parses one flat JSON object with string and integer values.
fn parse_line(line: &str) -> Option<CaseResult> {
    let fields = parse_flat_object(line)?;
    let s = |k: &str| match fields.get(k) {
        Some(Value::Str(v)) => v.clone(),
        Some(Value::Int(v)) => v.to_string(),
        None => String::new(),
    };
    let n = |k: &str| match fields.get(k) {
        Some(Value::Int(v)) => *v,
        _ => 0,
    };
    Some(CaseResult {
        case: u32::try_from(n("case")).ok()?,
        name: s("name"),
        expectation: s("expectation"),
        result: s("result"),
        seen: s("seen"),
        checks: s("checks"),
        ms: n("ms"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(u64),
}

fn parse_flat_object(line: &str) -> Option<BTreeMap<String, Value>> {
    let mut chars = line.trim().chars().peekable();
    let mut out = BTreeMap::new();
    if chars.next()? != '{' {
        return None;
    }
    loop {
        skip_ws(&mut chars);
        match chars.peek()? {
            '}' => return Some(out),
            ',' => {
                chars.next();
                continue;
            }
            '"' => {}
            _ => return None,
        }
        let key = parse_string(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next()? != ':' {
            return None;
        }
        skip_ws(&mut chars);
        let value = if *chars.peek()? == '"' {
            Value::Str(parse_string(&mut chars)?)
        } else {
            let mut digits = String::new();
            while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                digits.push(*c);
                chars.next();
            }
            Value::Int(digits.parse().ok()?)
        };
        out.insert(key, value);
    }
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn parse_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if chars.next()? != '"' {
        return None;
    }
    let mut s = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(s),
            '\\' => match chars.next()? {
                'n' => s.push('\n'),
                't' => s.push('\t'),
                'r' => s.push('\r'),
                'u' => {
                    let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                    s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                c => s.push(c),
            },
            c => s.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_report_lines() {
        let r = parse_line(
            r#"{"case":7,"name":"a \"b\"","expectation":"x\ny","result":"PASS","seen":"udp=0; tcp=0","checks":"ok: \u0041","ms":12}"#,
        )
        .expect("parse");
        assert_eq!(r.case, 7);
        assert_eq!(r.name, "a \"b\"");
        assert_eq!(r.expectation, "x\ny");
        assert_eq!(r.checks, "ok: A");
        assert_eq!(r.ms, 12);
        assert!(parse_line("not json").is_none());
    }

    #[test]
    fn markdown_escapes_cells() {
        let mut m = BTreeMap::new();
        m.insert(
            1,
            CaseResult {
                case: 1,
                name: "a|b".into(),
                result: "FAIL".into(),
                ..Default::default()
            },
        );
        let md = markdown(&m, 0, 1, 3);
        assert!(md.contains("a\\|b"));
        assert!(md.contains("**FAIL**"));
        assert!(md.contains("0 passed, 1 failed"));
    }
}
