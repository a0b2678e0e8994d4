//! CSV uploads, shared by the asset import (`buildings/import.rs`) and the reference-value
//! import (`reference_values.rs`): the body's type and size limits, reading the header (columns
//! named, any order, case-insensitive) and the rows, and the 422 `invalid_csv` problem that
//! lists problems by row and column. `row` is the line where the record starts (the header is
//! row 1), as a spreadsheet numbers it.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::error::{ApiError, CustomProblem, HandlerError};
use crate::http::extract::nul_in;

/// Largest accepted file.
pub const MAX_CSV_BYTES: usize = 5 * 1024 * 1024;
/// Most data rows in one file.
pub const MAX_CSV_ROWS: usize = 10_000;
/// Most row errors listed in one answer (the detail says how many there were).
const MAX_LISTED_ERRORS: usize = 1_000;

/// One problem in a file (or, without `row`, in a JSON body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// Line where the record starts; the header is row 1. Absent for a problem of a JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// The column (the field of a JSON body), or null for a problem with the whole row.
    pub field: Option<String>,
    pub message: String,
}

pub fn row_error(row: u64, field: Option<&str>, message: impl Into<String>) -> RowError {
    RowError {
        row: Some(row),
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// The body of a CSV upload: `Content-Type: text/csv` (or `application/csv`), at most
/// `MAX_CSV_BYTES`; 415 and 413 otherwise.
pub async fn read_csv_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "text/csv" || m == "application/csv");
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(
            "send the file with Content-Type: text/csv".into(),
        ));
    }
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the CSV file is larger than {} MiB; split it",
            MAX_CSV_BYTES / (1024 * 1024)
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_CSV_BYTES) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_CSV_BYTES)
        .await
        .map_err(|_| too_large())
}

/// 422 `invalid_csv` listing (at most `MAX_LISTED_ERRORS` of) `errors`; `what` replaces the
/// default summary.
pub fn invalid_csv(mut errors: Vec<RowError>, what: &str) -> CustomProblem {
    let total = errors.len();
    let rows = {
        let mut r: Vec<Option<u64>> = errors.iter().map(|e| e.row).collect();
        r.dedup();
        r.len()
    };
    errors.truncate(MAX_LISTED_ERRORS);
    let listed = if total > MAX_LISTED_ERRORS {
        format!(" (the first {MAX_LISTED_ERRORS} of {total} are listed)")
    } else {
        String::new()
    };
    let detail = if what.is_empty() {
        format!(
            "{total} problem(s) on {rows} row(s){listed}; nothing was imported: fix them and send the whole file again"
        )
    } else {
        format!("{what}; nothing was imported")
    };
    CustomProblem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv", detail)
        .with("errors", serde_json::to_value(errors).unwrap_or_default())
}

/// The columns a file may have, and which of them it must have.
pub struct Columns<'a> {
    pub names: &'a [&'a str],
    pub required: &'a [&'a str],
}

/// One data row: its line, and its trimmed cells in the order of `Columns::names` (`None` for
/// an absent column or an empty cell).
#[derive(Debug)]
pub struct CsvRow {
    pub row: u64,
    cells: Vec<Option<String>>,
}

impl CsvRow {
    /// The cell of column `k` (an index into `Columns::names`), taken out of the row.
    pub fn take(&mut self, k: usize) -> Option<String> {
        self.cells.get_mut(k).and_then(Option::take)
    }
}

/// The rows that could be read, and the structural problems of the others (field counts,
/// encoding).
pub type Parsed = (Vec<CsvRow>, Vec<RowError>);

/// Line numbers from byte offsets, counted once over the file (records come in order).
///
/// Not `csv::Position::line`: a record's position is taken before the reader consumes the
/// line feed of the previous record's CRLF, so in a file with CRLF line ends (as spreadsheets
/// save them) every data row was reported one line early; blank lines before a record counted
/// for the line before them too.
struct Lines<'b> {
    bytes: &'b [u8],
    at: usize,
    line: u64,
}

impl<'b> Lines<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The line of the record that starts at `pos` (or after the line breaks found there).
    fn of(&mut self, pos: Option<&csv::Position>) -> u64 {
        let Some(pos) = pos else { return 0 };
        let mut target = usize::try_from(pos.byte())
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while target < self.bytes.len() && matches!(self.bytes[target], b'\r' | b'\n') {
            target += 1;
        }
        if target < self.at {
            // Not expected (positions only grow); count from the start again.
            self.at = 0;
            self.line = 1;
        }
        self.line += self.bytes[self.at..target]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.at = target;
        self.line
    }
}

/// Read the header and the rows. A bad header, an empty file or too many rows is answered at
/// once; values are validated by the caller.
pub fn parse(bytes: &[u8], columns: &Columns<'_>) -> Result<Parsed, HandlerError> {
    let names = columns.names;
    // Spreadsheets often save UTF-8 with a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = Lines::new(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(invalid_csv(
                vec![row_error(
                    1,
                    None,
                    "the file is empty; the first row must name the columns",
                )],
                "the file is empty",
            )
            .into())
        }
        Some(Err(e)) => {
            return Err(invalid_csv(
                vec![row_error(1, None, e.to_string())],
                "the header row cannot be read",
            )
            .into())
        }
        Some(Ok(h)) => h,
    };
    let mut position: Vec<Option<usize>> = vec![None; names.len()];
    let mut header_errors = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
        match names.iter().position(|c| *c == name) {
            Some(k) if position[k].is_some() => {
                header_errors.push(row_error(1, Some(&name), "this column appears twice"))
            }
            Some(k) => position[k] = Some(i),
            None => header_errors.push(row_error(
                1,
                Some(&name),
                format!("unknown column; the columns are {}", names.join(",")),
            )),
        }
    }
    for required in columns.required {
        if names
            .iter()
            .position(|c| c == required)
            .is_none_or(|k| position[k].is_none())
        {
            header_errors.push(row_error(1, Some(required), "this column is required"));
        }
    }
    if !header_errors.is_empty() {
        return Err(invalid_csv(header_errors, "the header row is not valid").into());
    }
    let width = header.len();

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut count = 0;
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let row = lines.of(e.position());
                errors.push(row_error(row, None, format!("cannot read this row: {e}")));
                break;
            }
        };
        let row = lines.of(record.position());
        count += 1;
        if count > MAX_CSV_ROWS {
            return Err(invalid_csv(
                vec![row_error(
                    row,
                    None,
                    format!("more than {MAX_CSV_ROWS} rows"),
                )],
                &format!("the file has more than {MAX_CSV_ROWS} rows; split it"),
            )
            .into());
        }
        if record.len() != width {
            errors.push(row_error(
                row,
                None,
                format!(
                    "expected {width} fields like the header, found {}",
                    record.len()
                ),
            ));
            continue;
        }
        let before = errors.len();
        let mut cells = Vec::with_capacity(names.len());
        for (k, at) in position.iter().enumerate() {
            let raw = at.and_then(|i| record.get(i));
            cells.push(match raw.map(std::str::from_utf8) {
                None => None,
                Some(Ok(s)) if nul_in(s) => {
                    errors.push(row_error(
                        row,
                        Some(names[k]),
                        "text must not contain the NUL character (U+0000)",
                    ));
                    None
                }
                Some(Ok(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
                Some(Err(_)) => {
                    errors.push(row_error(row, Some(names[k]), "not valid UTF-8 text"));
                    None
                }
            });
        }
        if errors.len() == before {
            rows.push(CsvRow { row, cells });
        }
    }
    if count == 0 {
        return Err(invalid_csv(
            vec![row_error(2, None, "the file has a header but no rows")],
            "the file has no rows to import",
        )
        .into());
    }
    Ok((rows, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: Columns<'static> = Columns {
        names: &["a", "b"],
        required: &["a"],
    };

    fn rows(file: &str) -> Vec<(u64, Option<String>)> {
        let Ok((rows, errors)) = parse(file.as_bytes(), &COLS) else {
            panic!("{file:?} is readable");
        };
        assert!(errors.is_empty(), "{errors:?}");
        rows.into_iter().map(|mut r| (r.row, r.take(0))).collect()
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_numbers_lines() {
        let want = |v: &[(u64, &str)]| -> Vec<(u64, Option<String>)> {
            v.iter().map(|(r, s)| (*r, Some((*s).to_owned()))).collect()
        };
        assert_eq!(rows("a,b\n1,2\n3,4\n"), want(&[(2, "1"), (3, "3")]));
        assert_eq!(
            rows("a,b\r\n1,2\r\n3,4\r\n"),
            want(&[(2, "1"), (3, "3")]),
            "CRLF"
        );
        assert_eq!(
            rows("a,b\r\n\r\n1,2\n\n\n3,4"),
            want(&[(3, "1"), (6, "3")]),
            "blank lines count"
        );
        assert_eq!(
            rows("a,b\n\"multi\nline\",2\n3,4\n"),
            want(&[(2, "multi\nline"), (4, "3")]),
            "a quoted line break"
        );
        assert_eq!(
            rows("B,A\n, x \n"),
            vec![(2, Some("x".to_owned()))],
            "any order and case, trimmed"
        );
    }

    #[test]
    fn structural_problems_are_reported_by_row() {
        let Ok((rows, errors)) = parse(b"a,b\r\n1,2\r\n1,2,3\r\n4,5\r\n", &COLS) else {
            panic!("readable");
        };
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].row, errors[0].field.as_deref()), (Some(3), None));
        assert!(
            parse(b"b\n1\n", &COLS).is_err(),
            "a required column is missing"
        );
        assert!(parse(b"a,c\n1,2\n", &COLS).is_err(), "an unknown column");
        assert!(parse(b"a\n", &COLS).is_err(), "no rows");
    }
}
