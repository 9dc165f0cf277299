//! Pure checks of value syntax (no filesystem access). The filesystem-backed types
//! (files, log file, socket path) get their syntax checked here and the rest in `files`.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use super::allowlist::ValueType;

/// Longest path we accept (PATH_MAX).
const MAX_PATH: usize = 4095;

/// Checks the syntax of `value` against `ty`. For filesystem types only the path syntax is
/// checked. Returns the reason on failure.
pub(crate) fn check_syntax(ty: ValueType, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        return Err("a value may not start with `-`".into());
    }
    match ty {
        ValueType::Ip => ip(value).map(|_| ()),
        ValueType::Ipv4 => ipv4(value).map(|_| ()),
        ValueType::HostMask => {
            if ipv4(value)? == Ipv4Addr::BROADCAST {
                Ok(())
            } else {
                Err("only host routes are allowed".into())
            }
        }
        ValueType::LoopbackIp => {
            if ip(value)?.is_loopback() {
                Ok(())
            } else {
                Err("the management interface may only listen on loopback".into())
            }
        }
        ValueType::Port => number(value, 1, 65535).map(|_| ()),
        ValueType::UnprivilegedPort => number(value, 1024, 65535).map(|_| ()),
        ValueType::Number { min, max } => number(value, min, max).map(|_| ()),
        ValueType::Proto => {
            if ["tcp", "udp", "tcp4", "udp4", "tcp6", "udp6"].contains(&value) {
                Ok(())
            } else {
                Err("unknown protocol".into())
            }
        }
        ValueType::Cipher => cipher(value),
        ValueType::CipherList => {
            if value.len() > 512 {
                return Err("too long".into());
            }
            value.split(':').try_for_each(cipher)
        }
        ValueType::User => user(value),
        ValueType::ReadableFile | ValueType::LogFile | ValueType::SocketPath => {
            abs_path(value).map(|_| ())
        }
        ValueType::Literal(words) => {
            if words.contains(&value) {
                Ok(())
            } else {
                Err(format!("must be one of: {}", words.join(", ")))
            }
        }
    }
}

/// A strict IPv4 or IPv6 literal.
pub(crate) fn ip(value: &str) -> Result<IpAddr, String> {
    // std's parsers accept only the canonical forms: dotted quads with four decimal parts
    // and no leading zeros, RFC 4291 IPv6 text without zone index. No trailing text.
    IpAddr::from_str(value).map_err(|_| "not an IP address literal".to_string())
}

/// A strict dotted-quad IPv4 address.
pub(crate) fn ipv4(value: &str) -> Result<Ipv4Addr, String> {
    Ipv4Addr::from_str(value).map_err(|_| "not a dotted-quad IPv4 address".to_string())
}

/// ASCII decimal digits (no sign, no Unicode digits, at most 10 of them) within range.
pub(crate) fn number(value: &str, min: u32, max: u32) -> Result<u32, String> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number (ASCII digits only)".into());
    }
    let n: u64 = value
        .parse()
        .map_err(|_| "not a decimal number".to_string())?;
    if n < u64::from(min) || n > u64::from(max) {
        return Err(format!("out of range {min}-{max}"));
    }
    u32::try_from(n).map_err(|_| "out of range".to_string())
}

fn cipher(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("empty cipher name".into());
    };
    if bytes.len() > 64 {
        return Err("cipher name too long".into());
    }
    if !first.is_ascii_alphanumeric() {
        return Err("a cipher name starts with a letter or digit".into());
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err("a cipher name has only letters, digits, `-` and `_`".into());
    }
    if value.eq_ignore_ascii_case("none") {
        return Err("`none` (no encryption or authentication) is not allowed".into());
    }
    Ok(())
}

fn user(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let body = bytes.strip_suffix(b"$").unwrap_or(bytes);
    let ok_first = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@');
    let ok_rest = |b: &u8| ok_first(b) || *b == b'-';
    match body.split_first() {
        Some((first, rest)) if ok_first(first) && rest.iter().all(ok_rest) && body.len() <= 64 => {
            Ok(())
        }
        _ => Err("not a valid user name".into()),
    }
}

/// An absolute, normalised path: starts with `/`, no empty, `.` or `..` components, no NUL,
/// no trailing `/`, at most PATH_MAX bytes. Returns it unchanged.
pub(crate) fn abs_path(value: &str) -> Result<&str, String> {
    if !value.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if value.len() > MAX_PATH || value.contains('\0') {
        return Err("not a usable path".into());
    }
    let rest = &value[1..];
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("path must be normalised (no `//`, `.`, `..` or trailing `/`)".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_aton_forms_are_refused() {
        for v in [
            "127.1",
            "1",
            "4294967295",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "01.2.3.4",
            "1.2.3.4 junk",
            "1.2.3.4\n",
            " 1.2.3.4",
            "1.2.3",
            "fe80::1%eth0",
            "example.com",
            "",
        ] {
            assert!(ip(v).is_err(), "{v:?} accepted");
            assert!(ipv4(v).is_err(), "{v:?} accepted");
        }
        assert!(ip("198.51.100.1").is_ok());
        assert!(ip("2001:db8::1").is_ok());
    }

    #[test]
    fn numbers_are_ascii_and_in_range() {
        for v in [
            "\u{0663}",
            "١٢",
            "１",
            "+1",
            "-1",
            " 1",
            "1 ",
            "",
            "0x10",
            "99999999999",
        ] {
            assert!(number(v, 0, u32::MAX).is_err(), "{v:?} accepted");
        }
        assert_eq!(number("443", 1, 65535), Ok(443));
        assert!(number("65536", 1, 65535).is_err());
        assert!(number("0", 1, 65535).is_err());
    }

    #[test]
    fn ciphers() {
        for ok in [
            "AES-256-GCM",
            "aes-256-gcm",
            "CHACHA20-POLY1305",
            "SHA1",
            "TLS_AES_256",
        ] {
            assert!(check_syntax(ValueType::Cipher, ok).is_ok(), "{ok}");
        }
        assert!(check_syntax(ValueType::CipherList, "AES-256-GCM:CHACHA20-POLY1305").is_ok());
        for bad in [
            "none", "NONE", "AES 256", "AES;rm", "-x", "", "a:", ":a", "AES/GCM",
        ] {
            assert!(check_syntax(ValueType::CipherList, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert!(abs_path("/tmp/x").is_ok());
        for bad in [
            "tmp/x",
            "/",
            "/tmp/../etc/shadow",
            "/tmp//x",
            "/tmp/x/",
            "/./x",
            "[inline]",
            "stdin",
        ] {
            assert!(abs_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn users() {
        assert!(user("alice").is_ok());
        assert!(user("machine$").is_ok());
        assert!(user("-x").is_err());
        assert!(user("a b").is_err());
        assert!(user("").is_err());
    }
}
