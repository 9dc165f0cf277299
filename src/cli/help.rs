//! `--help`, generated from [`super::spec`].

use super::spec::{self, Cmd, Opt, ValueKind};

/// The width the help is wrapped to.
const WIDTH: usize = 95;
/// Where descriptions start.
const COLUMN: usize = 23;

/// The usage line of a command, without the program name: `[OPTIONS] firewall start ...`.
/// A command's own options come after its arguments, where the parser takes them.
pub fn usage_line(c: &Cmd) -> String {
    usage_with(c, &own_options(c))
}

/// The usage line as `--help` prints it: [`usage_line`], or when that would not fit in
/// the help's width, the command's own options as one `[EXPLAIN OPTIONS]` (the help lists
/// them under the command).
pub fn short_usage_line(c: &Cmd) -> String {
    let full = usage_line(c);
    if 4 + spec::PROGRAM.len() + 1 + full.chars().count() <= WIDTH {
        return full;
    }
    let name = c.words.last().copied().unwrap_or_default().to_uppercase();
    usage_with(c, &format!("[{name} OPTIONS]"))
}

fn own_options(c: &Cmd) -> String {
    if c.options.is_empty() {
        return String::new();
    }
    format!(
        "[{}]",
        c.options
            .iter()
            .map(opt_label)
            .collect::<Vec<_>>()
            .join("] [")
    )
}

fn usage_with(c: &Cmd, options: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if c.global_options {
        parts.push("[OPTIONS]".into());
    }
    parts.extend(c.words.iter().map(|w| w.to_string()));
    if !c.args.is_empty() {
        parts.push(c.args.to_string());
    }
    if !options.is_empty() {
        parts.push(options.to_string());
    }
    parts.join(" ")
}

/// An option as the help lists it: `--lan MODE`, `--debug, --test`.
pub fn opt_label(o: &Opt) -> String {
    let names = o.names.join(", ");
    match &o.value {
        Some(v) => format!("{names} {}", v.name),
        None => names,
    }
}

/// Wraps `text` to lines of at most `width` characters (longer words stay whole).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One entry: `    label              text...`, the label on its own line when it is too long.
fn entry(out: &mut String, indent: usize, label: &str, paragraphs: &[&str]) {
    let lead = format!("{:indent$}{label}", "");
    let mut first = true;
    if lead.chars().count() + 2 > COLUMN {
        out.push_str(&lead);
        out.push('\n');
        first = false;
    }
    for para in paragraphs {
        for line in wrap(para, WIDTH - COLUMN) {
            if first {
                out.push_str(&format!("{lead:COLUMN$}{line}\n"));
                first = false;
            } else {
                out.push_str(&format!("{:COLUMN$}{line}\n", ""));
            }
        }
    }
    if first {
        out.push_str(&lead);
        out.push('\n');
    }
}

fn option_paragraphs(o: &Opt) -> Vec<String> {
    let mut paras = vec![o.help.to_string()];
    if let Some(spec::Value {
        kind: ValueKind::OneOf(choices),
        ..
    }) = &o.value
    {
        paras.extend(choices.iter().map(|c| format!("{}: {}", c.word, c.help)));
    }
    paras
}

/// The whole `--help` text.
pub fn text() -> String {
    let mut out = String::new();
    for line in wrap(&format!("{}: {}", spec::PROGRAM, spec::ABOUT), WIDTH) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\nUSAGE:\n");
    for c in spec::COMMANDS {
        out.push_str(&format!("    {} {}\n", spec::PROGRAM, short_usage_line(c)));
    }
    for g in spec::GROUPS {
        out.push_str(&format!("\n{}:\n", g.title));
        if !g.note.is_empty() {
            for line in wrap(g.note, WIDTH - 4) {
                out.push_str(&format!("    {line}\n"));
            }
        }
        for c in spec::group_commands(g.name) {
            let own = &c.words[if g.name.is_empty() { 0 } else { 1 }..];
            let label = [own.join(" "), c.args.to_string()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let paras: Vec<&str> = c.help.split('\n').collect();
            entry(&mut out, 4, &label, &paras);
            for o in c.options {
                let paras = option_paragraphs(o);
                let paras: Vec<&str> = paras.iter().map(String::as_str).collect();
                entry(&mut out, 6, &opt_label(o), &paras);
            }
        }
    }
    out.push_str("\nOPTIONS (before the command):\n");
    for o in spec::OPTIONS {
        let paras = option_paragraphs(o);
        let paras: Vec<&str> = paras.iter().map(String::as_str).collect();
        entry(&mut out, 4, &opt_label(o), &paras);
    }
    out.push_str("\nENVIRONMENT:\n");
    for line in wrap(spec::ENVIRONMENT_NOTE, WIDTH - 4) {
        out.push_str(&format!("    {line}\n"));
    }
    for e in spec::ENVIRONMENT {
        entry(&mut out, 4, e.name, &[e.help]);
    }
    out.push_str("\nEXIT CODES:\n");
    for (code, meaning) in spec::EXIT_CODES {
        entry(&mut out, 4, &code.to_string(), &[meaning]);
    }
    out.push_str("\nEXAMPLES:\n");
    for (line, _) in spec::EXAMPLES {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::spec::*;
    use super::*;
    use crate::cli::{parse, Command};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn help_lists_every_command_and_option_and_fits() {
        let help = text();
        for c in COMMANDS {
            assert!(
                help.contains(&format!("{PROGRAM} {}", short_usage_line(c))),
                "{:?} missing from the usage",
                c.words
            );
        }
        for o in OPTIONS {
            for n in o.names {
                assert!(help.contains(n), "{n} missing from --help");
            }
        }
        for line in help.lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line:?}");
        }
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&format!("At most {}", crate::policy::MAX_GATEWAYS)));
    }

    #[test]
    fn every_command_id_is_listed_once() {
        use CmdId::*;
        for id in [
            FirewallStart,
            FirewallBlock,
            FirewallStop,
            FirewallIsup,
            FirewallGuard,
            EmailStart,
            EmailStop,
            EmailIsup,
            OpenvpnStart,
            OpenvpnStop,
            Version,
            Help,
        ] {
            assert_eq!(COMMANDS.iter().filter(|c| c.id == id).count(), 1, "{id:?}");
        }
        for c in COMMANDS {
            let first = c.words[0];
            let group = if c.words.len() == 1 { "" } else { first };
            assert!(
                GROUPS.iter().any(|g| g.name == group),
                "{:?} has no section",
                c.words
            );
        }
    }

    /// The parser accepts exactly the commands of the table: each one's words reach its id.
    #[test]
    fn the_parser_accepts_every_listed_command() {
        let example = |c: &Cmd| -> String {
            let args = match c.id {
                CmdId::FirewallStart => "198.51.100.7",
                CmdId::EmailStart => "1000",
                CmdId::OpenvpnStart => "--persist-tun",
                CmdId::FirewallExplain => "192.0.2.7:443",
                _ => "",
            };
            format!("{} {args}", c.words.join(" "))
        };
        for c in COMMANDS {
            let inv = parse(&words(&example(c)), &no_env).unwrap_or_else(|e| {
                panic!(
                    "{:?}: {e} (a command that needs arguments needs an example in this test)",
                    c.words
                )
            });
            let id = match inv.command {
                Command::Help => CmdId::Help,
                Command::Version => CmdId::Version,
                Command::FirewallStart(_) => CmdId::FirewallStart,
                Command::FirewallBlock(_) => CmdId::FirewallBlock,
                Command::FirewallStop => CmdId::FirewallStop,
                Command::FirewallIsup => CmdId::FirewallIsup,
                Command::FirewallGuard(_) => CmdId::FirewallGuard,
                Command::FirewallExplain(_) => CmdId::FirewallExplain,
                Command::FirewallStatus { .. } => CmdId::FirewallStatus,
                Command::EmailStart(_) => CmdId::EmailStart,
                Command::EmailStop => CmdId::EmailStop,
                Command::EmailIsup => CmdId::EmailIsup,
                Command::OpenvpnStart(_) => CmdId::OpenvpnStart,
                Command::OpenvpnStop => CmdId::OpenvpnStop,
                Command::Generate(_) => panic!("{:?} parsed as __generate", c.words),
            };
            assert_eq!(id, c.id, "{:?}", c.words);
        }
    }

    /// Every option of the table is accepted, with each of its allowed values; those that
    /// take a value refuse to go without one, those that do not refuse `=value`.
    #[test]
    fn the_parser_accepts_every_listed_option_and_value() {
        for o in OPTIONS {
            for name in o.names {
                let values: Vec<&str> = match &o.value {
                    None => vec![],
                    Some(v) => match v.kind {
                        ValueKind::OneOf(choices) => choices.iter().map(|c| c.word).collect(),
                        ValueKind::Ipv4 => vec!["192.0.2.53"],
                        ValueKind::Interface => vec!["wg0", "tun*"],
                        ValueKind::Text => vec!["1000"],
                    },
                };
                if values.is_empty() {
                    let line = format!("{name} firewall block");
                    assert!(parse(&words(&line), &no_env).is_ok(), "{line}");
                    if name.starts_with("--") {
                        let line = format!("{name}=x firewall block");
                        assert!(parse(&words(&line), &no_env).is_err(), "{line}");
                    }
                }
                for v in values {
                    for line in [
                        format!("{name} {v} firewall block"),
                        format!("{name}={v} firewall block"),
                    ] {
                        assert!(parse(&words(&line), &no_env).is_ok(), "{line}");
                    }
                }
                if o.value.is_some() {
                    assert!(
                        parse(&words(name), &no_env).is_err(),
                        "{name} without value"
                    );
                }
            }
        }
    }

    #[test]
    fn lan_modes_are_the_policy_modes() {
        let listed: Vec<&str> = LAN_MODES.iter().map(|c| c.word).collect();
        for mode in [
            crate::policy::LanMode::Private,
            crate::policy::LanMode::OnLink,
            crate::policy::LanMode::Off,
        ] {
            assert!(listed.contains(&mode.as_str()), "{mode} is not in the spec");
        }
        for word in listed {
            assert!(word.parse::<crate::policy::LanMode>().is_ok(), "{word}");
        }
    }

    #[test]
    fn the_environment_listed_is_the_environment_read() {
        let read = std::cell::RefCell::new(Vec::new());
        let env = |k: &str| {
            read.borrow_mut().push(k.to_string());
            None
        };
        parse(&words("firewall start 198.51.100.7"), &env).unwrap();
        parse(&words("firewall block"), &env).unwrap();
        let mut read = read.into_inner();
        read.sort();
        read.dedup();
        let mut listed: Vec<String> = ENVIRONMENT.iter().map(|e| e.name.to_string()).collect();
        listed.sort();
        assert_eq!(read, listed);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("", 6), Vec::<String>::new());
        assert_eq!(wrap("toolongword x", 4), vec!["toolongword", "x"]);
    }
}
