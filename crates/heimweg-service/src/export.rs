//! Lists for people who open them in a spreadsheet: CSV the way Excel in Germany reads it.

/// A table as CSV: `;` between fields, every field quoted, UTF-8 with a byte-order mark and
/// CRLF line ends (what Excel in Germany opens as it is). A field Excel would run as a formula
/// (`=`, `+`, `-`, `@`, a tab or a carriage return first) starts with `'`.
pub(crate) fn excel_csv<R, F>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = F>,
    F: IntoIterator<Item = String>,
{
    let field = |s: &str| {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    };
    let mut out = format!("\u{feff}{}\r\n", header.join(";"));
    for row in rows {
        let fields: Vec<String> = row.into_iter().map(|f| field(&f)).collect();
        out.push_str(&fields.join(";"));
        out.push_str("\r\n");
    }
    out
}

/// A moment for a list, in UTC (RFC 3339).
pub(crate) fn utc(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let csv = excel_csv(
            &["a", "b"],
            [vec![
                "=HYPERLINK(\"x\")".to_string(),
                "Straße; \"Nord\"".to_string(),
            ]],
        );
        assert_eq!(
            csv,
            "\u{feff}a;b\r\n\"'=HYPERLINK(\"\"x\"\")\";\"Straße; \"\"Nord\"\"\"\r\n"
        );
        assert!(excel_csv(&["a"], [vec!["\tcmd".to_string()]]).contains("\"'\tcmd\""));
    }
}
