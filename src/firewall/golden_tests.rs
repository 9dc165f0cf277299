//! Golden tests: the plan for known networks, rendered in nft syntax, equals the listings
//! the README shows and the seed's rules as nftables expresses them.

use crate::discovery::{Interface, Network, Prefix};
use crate::plan::plan;
use crate::policy::{Policy, Profile};

/// A host with loopback and `eth0` holding these addresses (prefix lengths given).
fn eth0_network(addrs: &[(&str, u8)]) -> Network {
    let prefix = |(a, l): &(&str, u8)| Prefix::new(a.parse().expect("address"), *l);
    Network {
        interfaces: vec![
            Interface {
                name: "lo".into(),
                index: 1,
                prefixes: vec![prefix(&("127.0.0.1", 8))],
            },
            Interface {
                name: "eth0".into(),
                index: 2,
                prefixes: addrs.iter().map(prefix).collect(),
            },
        ],
        default_v4: Some("eth0".into()),
        default_v6: None,
        ipv6: true,
    }
}

/// The seed's example: eth0 on 192.168.1.0/24 and its four gateways.
fn seed() -> (Network, Vec<std::net::IpAddr>) {
    let net = eth0_network(&[("192.168.1.10", 24), ("fe80::1", 64)]);
    let gws = [
        "199.58.81.145",
        "198.252.153.28",
        "5.79.86.180",
        "1.209.122.29",
    ]
    .iter()
    .map(|g| g.parse().unwrap())
    .collect();
    (net, gws)
}

const SEED_DEFAULT: &str = r#"table inet bitmask {
	comment "X"
	set gateways4 {
		type ipv4_addr
		size 4
		elements = { 1.209.122.29, 5.79.86.180,
			     198.252.153.28, 199.58.81.145 }
	}

	chain output {
		type filter hook output priority filter; policy accept;
		oifname "lo" accept
		oifname "tun*" accept
		ip daddr @gateways4 accept
		ct status dnat ip daddr 10.42.0.1 udp dport 53 accept
		ct status dnat ip daddr 10.42.0.1 tcp dport 53 accept
		udp dport 53 counter packets 0 bytes 0 reject
		tcp dport 53 counter packets 0 bytes 0 reject
		udp sport 68 udp dport 67 accept
		ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept
		ip6 hoplimit 255 icmpv6 type nd-router-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept
		ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept
		ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept
		oifname "eth0" ip daddr 192.168.1.0/24 accept
		oifname "eth0" ip6 daddr fe80::/64 accept
		ip daddr 239.255.255.250 udp dport 1900 accept
		ip daddr 224.0.0.251 udp dport 5353 accept
		ip6 daddr ff05::c udp dport 1900 accept
		ip6 daddr ff02::fb udp dport 5353 accept
		meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset
		counter packets 0 bytes 0 reject
	}

	chain dns_guard {
		type filter hook postrouting priority filter; policy accept;
		oifname "lo" accept
		oifname "tun*" accept
		ip daddr @gateways4 accept
		udp dport 53 counter packets 0 bytes 0 drop
		tcp dport 53 counter packets 0 bytes 0 drop
	}

	chain nat_output {
		type nat hook output priority -100; policy accept;
		ip daddr @gateways4 return
		oifname "lo" return
		meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53
		meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53
	}

	chain nat_postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 10.42.0.1 udp dport 53 masquerade
		ip daddr 10.42.0.1 tcp dport 53 masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "tun*" accept
		iifname "tun*" ct direction reply accept
		ip daddr @gateways4 counter packets 0 bytes 0 reject
		udp dport 53 counter packets 0 bytes 0 reject
		tcp dport 53 counter packets 0 bytes 0 reject
		udp sport 68 udp dport 67 accept
		ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept
		ip6 hoplimit 255 icmpv6 type nd-router-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-solicit accept
		ip6 hoplimit 255 icmpv6 type nd-neighbor-advert accept
		ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept
		ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept
		oifname "eth0" ip daddr 192.168.1.0/24 accept
		oifname "eth0" ip6 daddr fe80::/64 accept
		ip daddr 239.255.255.250 udp dport 1900 accept
		ip daddr 224.0.0.251 udp dport 5353 accept
		ip6 daddr ff05::c udp dport 1900 accept
		ip6 daddr ff02::fb udp dport 5353 accept
		meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset
		counter packets 0 bytes 0 reject
	}

	chain nat_prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "lo" return
		iifname "tun*" return
		fib daddr type local return
		ip daddr @gateways4 return
		meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53
		meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53
	}
}
"#;

#[test]
fn seed_network_renders_to_the_expected_nft_text() {
    let (net, gws) = seed();
    let policy = Policy::builder().gateways(gws).build().unwrap();
    let rs = plan(&policy, &net).unwrap();
    assert_eq!(crate::nft::render::render(&rs, "X"), SEED_DEFAULT);
}

/// Each rule of the seed's listing (iptables -S), as nftables writes it in --compat.
#[test]
fn compat_plan_holds_each_rule_of_the_seed_listing() {
    let (net, gws) = seed();
    let policy = Policy::builder()
        .gateways(gws)
        .profile(Profile::Compat)
        .debug(true)
        .build()
        .unwrap();
    let text = crate::nft::render::render(&plan(&policy, &net).unwrap(), "X");
    let seed_rules = [
        // -A bitmask -d 192.168.1.0/24 -o eth0 -j ACCEPT
        r#"oifname "eth0" ip daddr 192.168.1.0/24 accept"#,
        // -A bitmask -s 192.168.1.0/24 -o eth0 -p udp -m udp --dport 53 -j ACCEPT (and tcp)
        r#"oifname "eth0" ip saddr 192.168.1.0/24 udp dport 53 accept"#,
        r#"oifname "eth0" ip saddr 192.168.1.0/24 tcp dport 53 accept"#,
        // -A bitmask -d 239.255.255.250/32 -o eth0 -p udp -m udp --dport 1900 -j RETURN
        r#"oifname "eth0" ip daddr 239.255.255.250 udp dport 1900 return"#,
        r#"oifname "eth0" ip daddr 224.0.0.251 udp dport 5353 return"#,
        // -A bitmask -d GW -o eth0 -j ACCEPT, for each gateway
        r#"oifname "eth0" ip daddr 198.252.153.28 accept"#,
        r#"oifname "eth0" ip daddr 199.58.81.145 accept"#,
        r#"oifname "eth0" ip daddr 5.79.86.180 accept"#,
        r#"oifname "eth0" ip daddr 1.209.122.29 accept"#,
        // LOG --log-prefix "iptables denied: " --log-level 7
        r#"oifname "eth0" meta nfproto ipv4 log prefix "iptables denied: " level debug"#,
        // -A bitmask -o eth0 -j REJECT --reject-with icmp-port-unreachable (IPv4 only)
        r#"oifname "eth0" meta nfproto ipv4 counter packets 0 bytes 0 reject"#,
        // ip6tables: -d fe80::/64 -o eth0 ACCEPT, SSDP/mDNS RETURN, tcp/udp REJECT
        r#"oifname "eth0" ip6 daddr fe80::/64 accept"#,
        r#"oifname "eth0" ip6 daddr ff05::c udp dport 1900 return"#,
        r#"oifname "eth0" ip6 daddr ff02::fb udp dport 5353 return"#,
        r#"meta nfproto ipv6 meta l4proto tcp counter packets 0 bytes 0 reject"#,
        r#"meta nfproto ipv6 meta l4proto udp counter packets 0 bytes 0 reject"#,
        // nat: gateways RETURN, local stubs ACCEPT (udp only), DNAT udp and tcp
        r#"ip daddr 199.58.81.145 return"#,
        r#"ip daddr 127.0.1.1 udp dport 53 accept"#,
        r#"ip daddr 127.0.0.1 udp dport 53 accept"#,
        r#"ip daddr 127.0.0.53 udp dport 53 accept"#,
        r#"meta nfproto ipv4 udp dport 53 dnat ip to 10.42.0.1:53"#,
        r#"meta nfproto ipv4 tcp dport 53 dnat ip to 10.42.0.1:53"#,
        // nat postrouting: MASQUERADE udp and tcp to the resolver
        r#"ip daddr 10.42.0.1 udp dport 53 masquerade"#,
        r#"ip daddr 10.42.0.1 tcp dport 53 masquerade"#,
    ];
    for rule in seed_rules {
        assert!(
            text.lines().any(|l| l.trim() == rule),
            "the --compat plan lacks the seed's rule `{rule}`:\n{text}"
        );
    }
    assert!(
        !text.contains("hook forward") && !text.contains("hook prerouting"),
        "--compat has no forwarding rules, as the original:\n{text}"
    );
    let reject = text.lines().position(|l| {
        l.trim() == r#"oifname "eth0" meta nfproto ipv4 counter packets 0 bytes 0 reject"#
    });
    let gw = text
        .lines()
        .position(|l| l.trim() == r#"oifname "eth0" ip daddr 199.58.81.145 accept"#);
    assert!(
        gw < reject,
        "gateways must come before the reject, as in the seed"
    );
}

/// The README shows the plan for a host whose only network is eth0 on 192.168.1.0/24;
/// it must stay exactly what the code prints.
#[test]
fn the_readme_example_is_current() {
    let net = eth0_network(&[("192.168.1.10", 24)]);
    let policy = Policy::builder()
        .gateway("198.51.100.7".parse().unwrap())
        .build()
        .unwrap();
    let text = crate::nft::engine::render(&plan(&policy, &net).unwrap()).unwrap();
    assert!(
        include_str!("../../README.md").contains(&text),
        "README.md's example plan is out of date; it should read:\n{text}"
    );
}
