//! Plain-text tables and times for people; `--json` prints the server's
//! answer instead.

use serde_json::Value;

/// A table: a header row and rows of cells, printed with aligned columns
/// (two spaces apart), the last column unpadded.
pub(super) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, ending with a newline.
    pub(super) fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&width).enumerate() {
                if i + 1 == cols {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(super) fn print(&self) {
        print!("{}", self.render());
    }
}

/// The text of a JSON string or number field; `-` when absent or null.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The first 12 characters of an id (enough to be unique in a fleet; the
/// full id is in `--json`).
pub(super) fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `target@counter` of a `{target, release_counter}` object, `-` if null.
pub(super) fn deployed(v: &Value) -> String {
    match v.get("target").and_then(Value::as_str) {
        Some(t) => format!("{t}@{}", text(&v["release_counter"])),
        None => "-".to_owned(),
    }
}

/// How long ago a POSIX time was, in the largest sensible unit
/// (`42s ago`, `5m ago`, `3h ago`, `12d ago`); `never` for null.
pub(super) fn ago(v: &Value, now: i64) -> String {
    let Some(t) = v.as_i64() else {
        return "never".to_owned();
    };
    let d = now.saturating_sub(t);
    if d < 0 {
        return "in the future".to_owned();
    }
    match d {
        0..=119 => format!("{d}s ago"),
        120..=7_199 => format!("{}m ago", d / 60),
        7_200..=172_799 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// An RFC 3339 UTC time of a POSIX time, `-` for null.
pub(super) fn when(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let mut t = Table::new(&["A", "LONGER", "C"]);
        t.row(vec!["xyz".into(), "1".into(), "last".into()]);
        assert_eq!(t.render(), "A    LONGER  C\nxyz  1       last\n");
    }

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(&json!(100), 142), "42s ago");
        assert_eq!(ago(&json!(0), 300), "5m ago");
        assert_eq!(ago(&json!(0), 3 * 86_400), "3d ago");
        assert_eq!(ago(&Value::Null, 5), "never");
        assert_eq!(when(&json!(0)), "1970-01-01 00:00:00Z");
        assert_eq!(
            deployed(&json!({"target": "fw", "release_counter": 3})),
            "fw@3"
        );
        assert_eq!(deployed(&Value::Null), "-");
    }
}
