//! Fuzzes `bitmask_root::openvpn::validate`: whatever the words, an accepted argv must
//! consist of the fixed options followed only by allow-listed flags with values of the right
//! count and type (checked independently by `audit_argv`). Words are separated by NUL bytes
//! in the input; the first byte picks the IPv6 setting and the group.
#![no_main]

use bitmask_root::openvpn::{audit_argv, validate, LaunchEnv, OPENVPN_PATHS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<String> = rest
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let env = LaunchEnv {
        // An unprivileged invoking user: file checks run with nobody's rights.
        uid: 65534,
        ipv6_disabled: mode & 1 == 1,
        group: if mode & 2 == 2 {
            Some("nogroup".into())
        } else {
            None
        },
        openvpn_paths: OPENVPN_PATHS.iter().map(Into::into).collect(),
        run_dir: "/nonexistent/bitmask-root-fuzz".into(),
    };
    if let Ok(argv) = validate(&words, &env) {
        if let Err(why) = audit_argv(&argv) {
            panic!("validate accepted {words:?} but the result fails the audit: {why}\n{argv:?}");
        }
        // Every caller word made it into the argv unchanged, in order (nothing dropped).
        let tail: Vec<String> = argv
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        let flags_from = words
            .iter()
            .position(|w| w.starts_with("--"))
            .unwrap_or(words.len());
        assert!(
            tail.ends_with(&words[flags_from..]),
            "words dropped: {words:?} -> {tail:?}"
        );
    }
});
