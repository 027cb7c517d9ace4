//! The list of staff an admin imports for a rollout: CSV as Excel writes it in Germany (`;`
//! between fields, UTF-8 with a byte-order mark) or anywhere else (`,`, tabs), one row per
//! person and device.
//!
//! Columns, named in the first row (English or German, any case, any order):
//!
//! | column | also | required | meaning |
//! |---|---|---|---|
//! | `user` | `name`, `benutzer`, `person` | yes | the staff member (a heimweg user, created if new) |
//! | `email` | `e-mail`, `mail` | no | where the invitation goes |
//! | `group` | `gruppe` | no (`default`) | the access policy of the device |
//! | `device` | `gerät`, `geraet` | no | a device to invite them to set up: a one-time link |
//!
//! A row without a device creates only the user. Each row is checked on its own: a refused
//! row says why, and the others go ahead.

use crate::name::{Email, Name};
use std::collections::HashMap;

/// Larger files are refused before parsing: 20,000 rows of a city's staff fit in 2 MB.
pub const MAX_IMPORT_BYTES: usize = 8 << 20;
/// More rows are refused: import them in parts.
pub const MAX_IMPORT_ROWS: usize = 20_000;

/// A row that passed every check of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRow {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    pub user: Name,
    pub email: Option<Email>,
    pub group: Name,
    pub device: Option<Name>,
}

/// A row refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    pub line: u64,
    pub reason: String,
}

/// A parsed file: the rows to import and the rows refused, each in file order.
#[derive(Debug, Default)]
pub struct PeopleList {
    pub rows: Vec<PersonRow>,
    pub refused: Vec<RefusedRow>,
}

/// The file as a whole cannot be read; nothing of it is imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not UTF-8; in Excel, save it as \"CSV UTF-8\"")]
    NotUtf8,
    #[error("the file is larger than {} MB; import it in parts", MAX_IMPORT_BYTES >> 20)]
    TooLarge,
    #[error("the file has more than {MAX_IMPORT_ROWS} rows; import it in parts")]
    TooManyRows,
    #[error("the file is empty; its first row names the columns (user, email, group, device)")]
    Empty,
    #[error("unknown column {0:?}; the columns are user, email, group and device")]
    UnknownColumn(String),
    #[error("the column {0} appears twice")]
    DuplicateColumn(&'static str),
    #[error("no user column; the first row names the columns (user, email, group, device)")]
    NoUserColumn,
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Column {
    User,
    Email,
    Group,
    Device,
}

impl Column {
    fn named(header: &str) -> Option<Column> {
        match header.trim().to_lowercase().as_str() {
            "user" | "name" | "benutzer" | "person" => Some(Column::User),
            "email" | "e-mail" | "mail" => Some(Column::Email),
            "group" | "gruppe" => Some(Column::Group),
            "device" | "gerät" | "geraet" => Some(Column::Device),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Column::User => "user",
            Column::Email => "email",
            Column::Group => "group",
            Column::Device => "device",
        }
    }
}

/// The delimiter the header row uses: the most frequent of `;`, `,` and tab (Excel's German
/// CSV uses `;`, because `,` is the decimal separator there).
fn delimiter(header: &str) -> u8 {
    [b';', b',', b'\t']
        .into_iter()
        .max_by_key(|d| header.bytes().filter(|b| b == d).count())
        .filter(|d| header.as_bytes().contains(d))
        .unwrap_or(b',')
}

/// Reads a people list (see the module's comment).
pub fn parse_people(bytes: &[u8]) -> Result<PeopleList, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ImportError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or(ImportError::Empty)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(header))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // The line a record starts on, counted here as csv ends records: at `\n`, `\r\n` or a
    // lone `\r` (old Mac files). csv reports a CRLF record as starting at the previous line's
    // `\n`, and its own line counter is off likewise; the record's first byte is the first
    // after any line breaks. Records come in file order, so the count goes on from the last
    // one (counting from the start each time made 5,000 rows take 0.7 s).
    let bytes = text.as_bytes();
    let mut counted = (0usize, 1u64);
    let mut line_at = |byte: u64| {
        let at = record_start(bytes, byte);
        let (from, line) = if at >= counted.0 { counted } else { (0, 1) };
        counted = (at, line + line_breaks(&bytes[from..at]));
        counted.1
    };
    let csv_error = |e: csv::Error| ImportError::Csv {
        line: e.position().map_or(0, |p| {
            1 + line_breaks(&bytes[..record_start(bytes, p.byte())])
        }),
        message: e.to_string(),
    };
    let mut columns: Vec<Option<Column>> = Vec::new();
    for h in reader.headers().map_err(csv_error)? {
        if h.is_empty() {
            // Excel writes a trailing delimiter after the last named column.
            columns.push(None);
            continue;
        }
        let c = Column::named(h).ok_or_else(|| ImportError::UnknownColumn(h.into()))?;
        if columns.contains(&Some(c)) {
            return Err(ImportError::DuplicateColumn(c.as_str()));
        }
        columns.push(Some(c));
    }
    if !columns.contains(&Some(Column::User)) {
        return Err(ImportError::NoUserColumn);
    }

    let mut list = PeopleList::default();
    // Where a device and a user's e-mail were first seen, by key: a second row is refused.
    let mut devices: HashMap<String, u64> = HashMap::new();
    let mut emails: HashMap<String, (u64, Option<String>)> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        if list.rows.len() + list.refused.len() >= MAX_IMPORT_ROWS {
            return Err(ImportError::TooManyRows);
        }
        let line = record.position().map_or(0, |p| line_at(p.byte()));
        let field = |c: Column| {
            columns
                .iter()
                .position(|x| *x == Some(c))
                .and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
        };
        match person(line, &field) {
            Ok(row) => {
                if let Some(refusal) = repeats(&row, &mut devices, &mut emails) {
                    list.refused.push(RefusedRow {
                        line,
                        reason: refusal,
                    });
                } else {
                    list.rows.push(row);
                }
            }
            Err(reason) => list.refused.push(RefusedRow { line, reason }),
        }
    }
    Ok(list)
}

/// Where the record csv says starts at `byte` really starts: after any line breaks.
fn record_start(bytes: &[u8], byte: u64) -> usize {
    let mut at = usize::try_from(byte)
        .unwrap_or(bytes.len())
        .min(bytes.len());
    while at < bytes.len() && (bytes[at] == b'\r' || bytes[at] == b'\n') {
        at += 1;
    }
    at
}

/// Line breaks as csv counts them: `\n`, `\r\n` and a lone `\r` are one each.
pub fn line_breaks(bytes: &[u8]) -> u64 {
    let lone_cr = bytes
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count()
        + usize::from(bytes.last() == Some(&b'\r'));
    (bytes.iter().filter(|&&b| b == b'\n').count() + lone_cr) as u64
}

fn person<'a>(line: u64, field: &dyn Fn(Column) -> Option<&'a str>) -> Result<PersonRow, String> {
    let name = |c: Column, raw: &str| Name::new(raw).map_err(|e| format!("{}: {e}", c.as_str()));
    let user = name(
        Column::User,
        field(Column::User).ok_or("user: the user is missing")?,
    )?;
    let email = field(Column::Email)
        .map(|e| Email::new(e).map_err(|e| format!("email: {e}")))
        .transpose()?;
    let group = name(Column::Group, field(Column::Group).unwrap_or("default"))?;
    let device = field(Column::Device)
        .map(|d| name(Column::Device, d))
        .transpose()?;
    Ok(PersonRow {
        line,
        user,
        email,
        group,
        device,
    })
}

/// A device named twice, or a user given two different e-mail addresses: the later row is
/// refused, saying where the first one is.
fn repeats(
    row: &PersonRow,
    devices: &mut HashMap<String, u64>,
    emails: &mut HashMap<String, (u64, Option<String>)>,
) -> Option<String> {
    if let Some(d) = &row.device {
        if let Some(first) = devices.get(&d.key()) {
            return Some(format!("device: {d} is already on line {first}"));
        }
    }
    let email = row.email.as_ref().map(|e| e.as_str().to_lowercase());
    match emails.get(&row.user.key()) {
        Some((first, Some(e))) if email.as_ref().is_some_and(|x| x != e) => {
            return Some(format!(
                "email: line {first} gives {} another address",
                row.user
            ));
        }
        Some(_) => {}
        None => {
            emails.insert(row.user.key(), (row.line, email));
        }
    }
    if let Some(d) = &row.device {
        devices.insert(d.key(), row.line);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as text: line, user, e-mail, group, device.
    type Row = (u64, String, Option<String>, String, Option<String>);

    fn names(list: &PeopleList) -> Vec<Row> {
        list.rows
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.user.to_string(),
                    r.email.as_ref().map(|e| e.to_string()),
                    r.group.to_string(),
                    r.device.as_ref().map(|d| d.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn excel_in_germany_semicolons_a_bom_umlauts_and_empty_lines() {
        let file = "\u{feff}Benutzer;E-Mail;Gruppe;Gerät;\r\n\
                    Jürgen Müller;jm@stadt.example;Kämmerei;Jürgens Laptop;\r\n\
                    ;;;;\r\n\
                    \r\n\
                    \"Weiß; Anna\";aw@stadt.example;;;\r\n";
        let list = parse_people(file.as_bytes()).unwrap();
        assert!(list.refused.is_empty(), "{:?}", list.refused);
        assert_eq!(
            names(&list),
            vec![
                (
                    2,
                    "Jürgen Müller".into(),
                    Some("jm@stadt.example".into()),
                    "Kämmerei".into(),
                    Some("Jürgens Laptop".into())
                ),
                (
                    5,
                    "Weiß; Anna".into(),
                    Some("aw@stadt.example".into()),
                    "default".into(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn old_mac_line_endings_count_as_lines() {
        let list = parse_people(b"user;device\ranna;a1\rbernd;b1\r").unwrap();
        let lines: Vec<u64> = list.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3]);
    }

    #[test]
    fn commas_any_column_order_and_no_bom() {
        let file = "device,user\nipad-1,anna\n";
        let list = parse_people(file.as_bytes()).unwrap();
        assert_eq!(
            names(&list),
            vec![(
                2,
                "anna".into(),
                None,
                "default".into(),
                Some("ipad-1".into())
            )]
        );
    }

    #[test]
    fn each_refused_row_says_why_and_the_others_go_ahead() {
        let file = "user;email;device\n\
                    anna;not-an-address;a1\n\
                    ;x@y.z;a2\n\
                    bernd;b@y.z;IPAD\n\
                    carla;c@y.z;ipad\n\
                    bernd;other@y.z;b2\n\
                    bernd;B@Y.Z;b3\n\
                    dora\u{fffe};d@y.z;d1\n";
        let list = parse_people(file.as_bytes()).unwrap();
        let refused: Vec<(u64, &str)> = list
            .refused
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(refused.len(), 5, "{refused:?}");
        assert!(refused[0].0 == 2 && refused[0].1.starts_with("email:"));
        assert!(refused[1].0 == 3 && refused[1].1.contains("user is missing"));
        assert_eq!(refused[2], (5, "device: ipad is already on line 4"));
        assert_eq!(refused[3], (6, "email: line 4 gives bernd another address"));
        assert!(refused[4].0 == 8 && refused[4].1.starts_with("user:"));
        let lines: Vec<u64> = list.rows.iter().map(|r| r.line).collect();
        assert_eq!(
            lines,
            vec![4, 7],
            "the same address in other case is no conflict"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_refused_whole() {
        assert_eq!(parse_people(b"").unwrap_err(), ImportError::Empty);
        assert_eq!(
            parse_people(b"user;e-mail\xe4\nx;y\n").unwrap_err(),
            ImportError::NotUtf8
        );
        assert_eq!(
            parse_people(b"user;phone\nx;1\n").unwrap_err(),
            ImportError::UnknownColumn("phone".into())
        );
        assert_eq!(
            parse_people(b"email;device\nx@y.z;d\n").unwrap_err(),
            ImportError::NoUserColumn
        );
        assert_eq!(
            parse_people(b"user;Name\nx;y\n").unwrap_err(),
            ImportError::DuplicateColumn("user")
        );
        let big = format!("user\n{}", "x\n".repeat(MAX_IMPORT_ROWS + 1));
        assert_eq!(
            parse_people(big.as_bytes()).unwrap_err(),
            ImportError::TooManyRows
        );
    }
}
