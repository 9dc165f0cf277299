//! How a start proves that the kernel holds its plan (issue 14): by the kernel's echo of the
//! table, sets, chains and rules it committed, one dump of each set's elements, and the
//! generation right after, which must still be the commit's own. The table is read back
//! whole only when that account falls short (someone committed after us); these tests check
//! that an ordinary start never needs to, fresh or replacing, small or large, and that what
//! it verified is what `isup` and `nft` then find.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bitmask_root::engine::{Applied, Verification};
use bitmask_root::{email, firewall, policy::Policy, transport};
use netns_tests::Topology;

/// 2,500 IPv4 and 2,500 IPv6 gateways: several element messages per set.
fn many() -> Vec<IpAddr> {
    (0..2_500u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0001 + i)))
        .chain(
            (0..2_500u16).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i + 1))),
        )
        .collect()
}

#[test]
fn starts_are_verified_by_the_kernels_echo_and_hold_up() {
    let t = Topology::builder().build().expect("topology");
    let ran = t
        .client()
        .run(|| -> Result<_, String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| e.to_string())?;
            let policy = |gws: Vec<IpAddr>| Policy::builder().gateways(gws).build();
            let one = policy(vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))])
                .map_err(|e| e.to_string())?;
            let large = policy(many()).map_err(|e| e.to_string())?;
            let mut applied: Vec<(&str, Applied)> = Vec::new();
            for (label, p) in [
                ("fresh", &one),
                ("replacing, large", &large),
                ("replacing", &one),
            ] {
                let a = rt
                    .block_on(firewall::start(p))
                    .map_err(|e| format!("{label}: {e}"))?;
                let up = rt.block_on(firewall::status()).map_err(|e| e.to_string())?;
                if !up.is_up() {
                    return Err(format!("{label}: isup after the start says {up}"));
                }
                applied.push((label, a));
            }
            let now = transport::generation().map_err(|e| e.to_string())?;
            firewall::stop().map_err(|e| e.to_string())?;
            let fresh_large = rt
                .block_on(firewall::start(&large))
                .map_err(|e| e.to_string())?;
            applied.push(("fresh, large", fresh_large));
            firewall::stop().map_err(|e| e.to_string())?;
            let mail = email::start(1000).map_err(|e| e.to_string())?;
            applied.push(("fw-email", mail));
            email::stop().map_err(|e| e.to_string())?;
            Ok((applied, now))
        })
        .expect("thread in namespace");
    let (applied, now) = ran.expect("starts");
    for (label, a) in &applied {
        assert_eq!(a.verified_by, Verification::Echo, "{label}");
    }
    // The last start in place was verified at the generation the namespace still holds.
    assert_eq!(applied[2].1.generation, now);
}

/// The batch asks for one ACK, on its last message; the kernel still reports the error of any
/// message it refuses with that message's sequence number, so the error names the object.
#[test]
fn a_refused_rule_is_named_and_nothing_is_changed() {
    use bitmask_root::nft::ruleset::{Action, Chain, ChainKind, Hook, Match, Rule, Ruleset, L4};
    use bitmask_root::transport::TransportError;
    let rule = |action| Rule::new(vec![Match::Dport(L4::Tcp, 22)], action);
    let rs = Ruleset {
        table: "bmr_refused".to_string(),
        record: String::new(),
        sets: Vec::new(),
        chains: vec![Chain {
            name: "output".to_string(),
            hook: Hook::Output,
            kind: ChainKind::Filter,
            priority: 0,
            rules: vec![
                rule(Action::Accept),
                // The kernel refuses log prefixes longer than 127 bytes.
                rule(Action::Log {
                    prefix: "x".repeat(200),
                    level: 7,
                }),
                rule(Action::Accept),
            ],
        }],
        set_ip_forward: false,
    };
    let t = Topology::builder().build().expect("topology");
    let (refused, exists) = t
        .client()
        .run(move || {
            let enc = transport::encode_create(&rs, "c").expect("encode");
            let refused = transport::commit(&enc);
            let exists = bitmask_root::readback::table_exists("bmr_refused");
            (refused, exists)
        })
        .expect("thread in namespace");
    match refused {
        Err(TransportError::Rejected { what, .. }) => {
            assert!(
                what.starts_with("rule 2 of chain output (tcp dport 22 log prefix"),
                "{what}"
            )
        }
        other => panic!("the kernel must refuse the long prefix: {other:?}"),
    }
    assert!(!exists.expect("table_exists"), "nothing was created");
}
