//! A small JSON value and its printer, for `--json` outputs (no dependency needed for this).

use std::fmt::Write;

/// A JSON value; object keys keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// A string value.
    pub fn str(s: impl ToString) -> Json {
        Json::Str(s.to_string())
    }
    /// A string, or null.
    pub fn opt_str<T: ToString>(s: Option<T>) -> Json {
        s.map_or(Json::Null, |v| Json::Str(v.to_string()))
    }
    /// An integer, or null.
    pub fn opt_int<T: Into<i128>>(n: Option<T>) -> Json {
        n.map_or(Json::Null, |v| Json::Int(v.into()))
    }
    /// An object from `(key, value)` pairs.
    pub fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// The value, indented by two spaces per level, with a final newline.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s.push('\n');
        s
    }

    fn write(&self, s: &mut String, depth: usize) {
        let pad = |s: &mut String, d: usize| {
            s.push('\n');
            s.push_str(&"  ".repeat(d));
        };
        match self {
            Json::Null => s.push_str("null"),
            Json::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(s, "{n}");
            }
            Json::Str(v) => quote(s, v),
            Json::Arr(items) if items.is_empty() => s.push_str("[]"),
            Json::Obj(fields) if fields.is_empty() => s.push_str("{}"),
            Json::Arr(items) => {
                s.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    pad(s, depth + 1);
                    item.write(s, depth + 1);
                }
                pad(s, depth);
                s.push(']');
            }
            Json::Obj(fields) => {
                s.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    pad(s, depth + 1);
                    quote(s, k);
                    s.push_str(": ");
                    v.write(s, depth + 1);
                }
                pad(s, depth);
                s.push('}');
            }
        }
    }
}

fn quote(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_escaped_nested_values() {
        let j = Json::obj([
            ("a", Json::str("x\"y\\\n\u{1}")),
            (
                "b",
                Json::Arr(vec![Json::Int(-3), Json::Null, Json::Bool(true)]),
            ),
            ("c", Json::Obj(vec![])),
        ]);
        assert_eq!(
            j.pretty(),
            "{\n  \"a\": \"x\\\"y\\\\\\n\\u0001\",\n  \"b\": [\n    -3,\n    null,\n    true\n  ],\n  \"c\": {}\n}\n"
        );
    }
}
