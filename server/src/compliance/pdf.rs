//! The report as a printable PDF: the yearly condition report of AS 1851 cl. 1.17. A4
//! landscape; the first page carries the building, the overall status and the summary; the
//! table of assets and rules runs over as many pages as it needs, its header repeated on each,
//! every page footed with "page n of N".
//!
//! The same writer prints a one-page defect notice ([`render_notice`]): what was found, where,
//! by whom, the notification deadline and what the owner must do (A4 portrait).
//!
//! Written with `pdf-writer` in the standard Helvetica fonts every PDF reader has (nothing is
//! embedded), text in WinAnsi (Windows-1252): characters outside it print as `?`. Page content
//! streams are deflated.
//!
//! [`layout`] lays out other documents (the records of `crate::records`) with the same primitives.

pub mod layout;

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use pdf_writer::{Content, Date, Filter, Name, Pdf, Rect, Ref, Str, TextStr};

use super::{Report, ReportRow, Status};

const PAGE_W: f32 = 841.89;
const PAGE_H: f32 = 595.28;
const MARGIN: f32 = 36.0;
const FOOTER_Y: f32 = 20.0;
const ROW_H: f32 = 12.0;
const CELL_FONT: f32 = 7.5;
const PAD: f32 = 3.0;
const INTERVAL_COLUMN: usize = 8;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Table columns: heading and width (points); they fill the width between the margins. "Open
/// defects" is critical/non-critical/non-conformance.
const COLUMNS: [(&str, f32); 11] = [
    ("Asset", 78.0),
    ("Type", 92.0),
    ("Location", 98.0),
    ("Rule", 92.0),
    ("Frequency", 62.0),
    ("Last service", 58.0),
    ("Outcome", 40.0),
    ("Next due", 54.0),
    ("Interval", 58.0),
    ("Open defects", 68.0),
    ("Status", 67.77),
];

pub fn render(report: &Report) -> Vec<u8> {
    let pages = paginate(report.items.len());
    let total = pages.len();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let page_ref = |i: usize| Ref::new(6 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(7 + 2 * i as i32);

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..total).map(page_ref))
        .count(total as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("Yearly condition report - {}", report.building.name);
    let g = report.generated_at;
    pdf.document_info(info)
        .title(TextStr(&title))
        .producer(TextStr("FireMode"))
        .creation_date(
            Date::new(chrono::Datelike::year(&g).clamp(0, 9999) as u16)
                .month(chrono::Datelike::month(&g) as u8)
                .day(chrono::Datelike::day(&g) as u8)
                .hour(chrono::Timelike::hour(&g) as u8)
                .minute(chrono::Timelike::minute(&g) as u8)
                .second(chrono::Timelike::second(&g) as u8)
                .utc_offset_hour(0),
        );

    for (i, rows) in pages.iter().enumerate() {
        let mut c = Content::new();
        let mut y = if i == 0 {
            first_page_header(&mut c, report)
        } else {
            running_header(&mut c, report)
        };
        y = table(&mut c, y, &report.items[rows.clone()], rows.start);
        if report.items.is_empty() {
            text(
                &mut c,
                REGULAR,
                9.0,
                MARGIN,
                y - 14.0,
                "This building has no assets.",
            );
        }
        footer(&mut c, report, i + 1, total);
        let data = deflate(&c.finish());
        pdf.stream(content_ref(i), &data)
            .filter(Filter::FlateDecode);
        let mut page = pdf.page(page_ref(i));
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .contents(content_ref(i));
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
    }
    pdf.finish()
}

/// Page content compressed (FlateDecode is zlib): the text compresses about sixfold, and the
/// fast level costs little next to laying the pages out.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(data);
    z.finish().unwrap_or_default()
}

/// Rows per page (down to about 40 pt above the page edge, clear of the footer): the first
/// page has the summary above its table.
const FIRST_PAGE_ROWS: usize = 22;
const PAGE_ROWS: usize = 39;

/// The item ranges of each page (at least one page).
fn paginate(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut start = n.min(FIRST_PAGE_ROWS);
    let mut pages = Vec::new();
    pages.push(0..start);
    while start < n {
        let end = (start + PAGE_ROWS).min(n);
        pages.push(start..end);
        start = end;
    }
    pages
}

fn status_label(s: Status) -> &'static str {
    match s {
        Status::Compliant => "Compliant",
        Status::DefectsOpen => "Defects open",
        Status::Overdue => "Overdue",
        Status::CriticalDefect => "Critical defect",
    }
}

/// `six_monthly` -> `6-monthly`: short enough for its column.
fn frequency_label(code: &str) -> String {
    let short = [
        ("three_", "3-"),
        ("six_", "6-"),
        ("five_", "5-"),
        ("ten_", "10-"),
        ("twenty_five_", "25-"),
        ("thirty_", "30-"),
    ];
    for (long, num) in short {
        if let Some(rest) = code.strip_prefix(long) {
            return format!("{num}{rest}");
        }
    }
    code.replace('_', " ")
}

fn status_rgb(s: Status) -> (f32, f32, f32) {
    match s {
        Status::Compliant => (0.0, 0.45, 0.15),
        Status::DefectsOpen => (0.65, 0.45, 0.0),
        Status::Overdue => (0.85, 0.35, 0.0),
        Status::CriticalDefect => (0.75, 0.0, 0.0),
    }
}

/// Building, overall status and summary; returns where the table starts.
fn first_page_header(c: &mut Content, r: &Report) -> f32 {
    let mut y = PAGE_H - MARGIN - 14.0;
    text(c, BOLD, 16.0, MARGIN, y, "Yearly condition report");
    text(
        c,
        REGULAR,
        9.0,
        MARGIN + 220.0,
        y + 1.0,
        "Routine service of fire protection systems and equipment (AS 1851)",
    );
    y -= 24.0;
    text(c, BOLD, 13.0, MARGIN, y, &r.building.name);
    y -= 14.0;
    text(c, REGULAR, 9.0, MARGIN, y, &r.building.address);
    y -= 12.0;
    let facts = format!(
        "Building type: {}    Rule set: {} {}    Report date: {}    Generated: {}",
        r.building.building_type,
        r.building.rule_set.code,
        r.building.rule_set.version,
        r.as_of,
        r.generated_at
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    text(c, REGULAR, 9.0, MARGIN, y, &facts);

    // Overall status, in a coloured band.
    y -= 26.0;
    let (red, green, blue) = status_rgb(r.status);
    c.set_fill_rgb(red, green, blue)
        .rect(MARGIN, y - 5.0, 250.0, 20.0)
        .fill_nonzero();
    c.set_fill_gray(1.0);
    text(
        c,
        BOLD,
        12.0,
        MARGIN + 8.0,
        y + 1.0,
        &format!("Overall status: {}", status_label(r.status)),
    );
    c.set_fill_gray(0.0);
    let notes = [
        "Status precedence: critical defect (an open critical defect) > overdue (a service late beyond",
        "its tolerance, or never done) > defects open (non-critical defects, non-conformances) > compliant.",
        "Open defects column: critical / non-critical / non-conformance.",
    ];
    for (n, note) in notes.iter().enumerate() {
        text(
            c,
            REGULAR,
            7.5,
            MARGIN + 262.0,
            y + 9.0 - 8.5 * n as f32,
            note,
        );
    }

    // Summary: two columns of figures.
    let s = &r.summary;
    let left = [
        ("Assets", s.assets.to_string()),
        ("Checks (asset x rule)", s.checks.to_string()),
        ("Serviced", s.serviced.to_string()),
        ("Never serviced", s.never_serviced.to_string()),
        (
            "Assets without an active rule",
            s.assets_without_rules.to_string(),
        ),
    ];
    let right = [
        ("Overdue", s.overdue.to_string()),
        (
            "Outside tolerance (cl. 1.11)",
            s.outside_tolerance.to_string(),
        ),
        ("Last service failed", s.failed.to_string()),
        (
            "Open defects (critical / non-critical / non-conformance)",
            format!(
                "{} / {} / {}",
                s.open_defects.critical,
                s.open_defects.non_critical,
                s.open_defects.non_conformance
            ),
        ),
        (
            "Checks compliant / defects open / overdue / critical",
            format!(
                "{} / {} / {} / {}",
                s.rows_by_status.compliant,
                s.rows_by_status.defects_open,
                s.rows_by_status.overdue,
                s.rows_by_status.critical_defect
            ),
        ),
    ];
    y -= 28.0;
    text(c, BOLD, 10.0, MARGIN, y, "Summary");
    for (n, ((lk, lv), (rk, rv))) in left.iter().zip(right.iter()).enumerate() {
        let ly = y - 13.0 * (n as f32 + 1.0);
        text(c, REGULAR, 8.5, MARGIN, ly, lk);
        text(c, BOLD, 8.5, MARGIN + 150.0, ly, lv);
        text(c, REGULAR, 8.5, MARGIN + 260.0, ly, rk);
        text(c, BOLD, 8.5, MARGIN + 500.0, ly, rv);
    }
    y - 13.0 * (left.len() as f32 + 1.0) - 12.0
}

/// Later pages: one line naming the report; returns where the table starts.
fn running_header(c: &mut Content, r: &Report) -> f32 {
    let y = PAGE_H - MARGIN - 8.0;
    text(
        c,
        BOLD,
        9.0,
        MARGIN,
        y,
        &format!("Yearly condition report - {}", r.building.name),
    );
    let right = format!("Report date {}", r.as_of);
    text(
        c,
        REGULAR,
        9.0,
        PAGE_W - MARGIN - width(&right, 9.0, false),
        y,
        &right,
    );
    y - 10.0
}

/// The table's header and rows from `top` down; returns the y below the last row.
fn table(c: &mut Content, top: f32, rows: &[ReportRow], first_index: usize) -> f32 {
    let width: f32 = COLUMNS.iter().map(|(_, w)| w).sum();
    let mut y = top - ROW_H;
    c.set_fill_gray(0.85)
        .rect(MARGIN, y, width, ROW_H)
        .fill_nonzero();
    c.set_fill_gray(0.0);
    let mut x = MARGIN;
    for (heading, w) in COLUMNS {
        cell(c, BOLD, x, y, w, heading);
        x += w;
    }
    for (n, row) in rows.iter().enumerate() {
        y -= ROW_H;
        if (first_index + n) % 2 == 1 {
            c.set_fill_gray(0.95)
                .rect(MARGIN, y, width, ROW_H)
                .fill_nonzero();
            c.set_fill_gray(0.0);
        }
        let asset = row
            .identifier
            .clone()
            .unwrap_or_else(|| row.asset_id.to_string());
        let interval = match (row.interval_days, row.outside_tolerance) {
            (Some(d), true) => format!("{d} d outside"),
            (Some(d), false) => format!("{d} d"),
            (None, _) => String::new(),
        };
        let d = &row.open_defects;
        let defects = if d.total() == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}/{}", d.critical, d.non_critical, d.non_conformance)
        };
        let next_due = match (row.next_due, row.rule_code.is_some()) {
            (Some(due), _) => due.to_string(),
            (None, true) => "now".to_owned(),
            (None, false) => String::new(),
        };
        let cells = [
            asset,
            row.asset_type.clone(),
            row.location.clone(),
            row.rule_code
                .clone()
                .unwrap_or_else(|| "(no active rule)".into()),
            row.frequency
                .as_deref()
                .map(frequency_label)
                .unwrap_or_default(),
            row.last_service
                .map(|t| t.date_naive().to_string())
                .unwrap_or_else(|| {
                    if row.rule_code.is_some() {
                        "never".into()
                    } else {
                        String::new()
                    }
                }),
            row.outcome.clone().unwrap_or_default(),
            next_due,
            interval,
            defects,
        ];
        let mut x = MARGIN;
        for (n, (value, (_, w))) in cells.iter().zip(COLUMNS).enumerate() {
            // Work outside its tolerance window stands out (cl. 1.11 asks for it reported).
            let flag = n == INTERVAL_COLUMN && row.outside_tolerance;
            if flag {
                let (red, green, blue) = status_rgb(Status::Overdue);
                c.set_fill_rgb(red, green, blue);
            }
            cell(c, if flag { BOLD } else { REGULAR }, x, y, w, value);
            if flag {
                c.set_fill_gray(0.0);
            }
            x += w;
        }
        let (red, green, blue) = status_rgb(row.status);
        c.set_fill_rgb(red, green, blue);
        cell(c, BOLD, x, y, COLUMNS[10].1, status_label(row.status));
        c.set_fill_gray(0.0);
    }
    c.set_stroke_gray(0.6).set_line_width(0.5);
    c.move_to(MARGIN, y).line_to(MARGIN + width, y).stroke();
    y
}

fn footer(c: &mut Content, r: &Report, page: usize, total: usize) {
    let left = format!(
        "{} - generated by FireMode {}",
        r.building.name,
        r.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    text(c, REGULAR, 7.0, MARGIN, FOOTER_Y, &left);
    let right = format!("Page {page} of {total}");
    text(
        c,
        REGULAR,
        7.0,
        PAGE_W - MARGIN - width(&right, 7.0, false),
        FOOTER_Y,
        &right,
    );
}

/// One table cell: text cut to the column width (with "...").
fn cell(c: &mut Content, font: Name, x: f32, y: f32, w: f32, value: &str) {
    let bold = font == BOLD;
    let room = w - 2.0 * PAD;
    let shown = fit(value, CELL_FONT, bold, room);
    text(c, font, CELL_FONT, x + PAD, y + 3.5, &shown);
}

fn text(c: &mut Content, font: Name, size: f32, x: f32, y: f32, s: &str) {
    let bytes = win_ansi(s);
    c.begin_text()
        .set_font(font, size)
        .next_line(x, y)
        .show(Str(&bytes))
        .end_text();
}

/// `s`, shortened with "..." until it fits in `room` points.
fn fit(s: &str, size: f32, bold: bool, room: f32) -> String {
    if width(s, size, bold) <= room {
        return s.to_owned();
    }
    let mut out: String = s.to_owned();
    while !out.is_empty() && width(&format!("{out}..."), size, bold) > room {
        out.pop();
    }
    format!("{}...", out.trim_end())
}

/// Helvetica advance widths (1/1000 em) of ASCII 32-126, from the Adobe core-14 font metrics.
/// Helvetica-Bold is measured 10% wider, which keeps bold text inside its cell.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

fn width(s: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = s
        .chars()
        .map(|ch| match ch as u32 {
            code @ 32..=126 => u32::from(HELVETICA[(code - 32) as usize]),
            _ => 1000, // outside ASCII: measured wide, so it never overflows
        })
        .sum();
    let k = if bold { 1.1 } else { 1.0 };
    units as f32 * size / 1000.0 * k
}

/// Windows-1252 bytes of `s` (the fonts' encoding); other characters become `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|ch| match ch {
            ' '..='~' => ch as u8,
            '\u{a0}'..='\u{ff}' => ch as u32 as u8,
            '\u{20ac}' => 0x80,
            '\u{2026}' => 0x85,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201c}' => 0x93,
            '\u{201d}' => 0x94,
            '\u{2022}' => 0x95,
            _ => b'?',
        })
        .collect()
}

/// What a printed defect notice says (from the notice's data, as it was when the change
/// committed, and who found the defect).
#[derive(Debug, Clone, Default)]
pub struct NoticeSheet {
    /// `Critical defect notice`, `Escalation`...
    pub heading: String,
    pub notice_id: String,
    pub organisation: String,
    pub building_name: String,
    pub building_address: String,
    /// `EXT-003 (Portable fire extinguisher, Level 2 kitchen)`.
    pub asset: String,
    pub severity: String,
    pub title: String,
    pub description: String,
    pub condition: String,
    /// Date and time, as printed.
    pub found_at: String,
    /// Who found or recorded it, with their licence number.
    pub found_by: String,
    pub notify_by: String,
    pub action_required: String,
    pub issued_at: DateTime<Utc>,
}

const NOTICE_W: f32 = 595.28;
const NOTICE_H: f32 = 841.89;
const NOTICE_MARGIN: f32 = 48.0;

/// A one-page notice of a defect, for the responsible person.
pub fn render_notice(n: &NoticeSheet) -> Vec<u8> {
    let (catalog, tree, page_ref, content_ref) =
        (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let (regular, bold, info) = (Ref::new(5), Ref::new(6), Ref::new(7));
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page_ref]).count(1);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("{} - {}", n.heading, n.building_name);
    pdf.document_info(info)
        .title(TextStr(&title))
        .producer(TextStr("FireMode"));

    let mut c = Content::new();
    let left = NOTICE_MARGIN;
    let room = NOTICE_W - 2.0 * NOTICE_MARGIN;
    let mut y = NOTICE_H - NOTICE_MARGIN - 16.0;
    let critical = n.severity.eq_ignore_ascii_case("critical");
    if critical {
        c.set_fill_rgb(0.75, 0.0, 0.0);
    }
    text(
        &mut c,
        BOLD,
        18.0,
        left,
        y,
        &fit(&n.heading, 18.0, true, room),
    );
    c.set_fill_gray(0.0);
    y -= 16.0;
    text(
        &mut c,
        REGULAR,
        9.0,
        left,
        y,
        "Written notice of a defect found during routine service of fire protection equipment (AS 1851)",
    );
    y -= 10.0;
    c.set_stroke_gray(0.4).set_line_width(0.8);
    c.move_to(left, y).line_to(left + room, y).stroke();
    y -= 22.0;

    let label_w = 130.0;
    let rows: [(&str, &str); 10] = [
        ("Building", &n.building_name),
        ("Address", &n.building_address),
        ("Asset", &n.asset),
        ("Severity", &n.severity),
        ("Defect", &n.title),
        ("Condition found", &n.condition),
        ("Found", &n.found_at),
        ("Found by", &n.found_by),
        ("Notify the owner by", &n.notify_by),
        ("Service provider", &n.organisation),
    ];
    for (label, value) in rows {
        text(&mut c, BOLD, 10.0, left, y, label);
        let lines = wrap(value, 10.0, false, room - label_w);
        for (i, line) in lines.iter().enumerate() {
            text(
                &mut c,
                REGULAR,
                10.0,
                left + label_w,
                y - 13.0 * i as f32,
                line,
            );
        }
        y -= 13.0 * lines.len().max(1) as f32 + 7.0;
    }
    if !n.description.trim().is_empty() {
        y -= 6.0;
        text(&mut c, BOLD, 11.0, left, y, "What was found");
        y -= 15.0;
        for line in wrap(&n.description, 10.0, false, room).iter().take(12) {
            text(&mut c, REGULAR, 10.0, left, y, line);
            y -= 13.0;
        }
    }
    y -= 10.0;
    text(&mut c, BOLD, 11.0, left, y, "What the owner must do");
    y -= 15.0;
    for line in wrap(&n.action_required, 10.0, false, room) {
        text(&mut c, REGULAR, 10.0, left, y, &line);
        y -= 13.0;
    }
    y -= 8.0;
    for line in wrap(
        "Critical defects are to be confirmed to the owner in writing within 24 hours of being \
         found, and again each time they are found; other defects within a week. Keep this \
         notice with the building's fire safety records.",
        8.5,
        false,
        room,
    ) {
        text(&mut c, REGULAR, 8.5, left, y, &line);
        y -= 11.0;
    }
    let foot = format!(
        "Notice {} - issued {} by FireMode",
        n.notice_id,
        n.issued_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    text(
        &mut c,
        REGULAR,
        7.0,
        left,
        FOOTER_Y + 10.0,
        &fit(&foot, 7.0, false, room),
    );

    let data = deflate(&c.finish());
    pdf.stream(content_ref, &data).filter(Filter::FlateDecode);
    {
        let mut page = pdf.page(page_ref);
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, NOTICE_W, NOTICE_H))
            .contents(content_ref);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
    }
    pdf.finish()
}

/// `s` broken into lines of at most `room` points, at spaces (a word longer than a line is
/// cut to fit).
fn wrap(s: &str, size: f32, bold: bool, room: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if width(&candidate, size, bold) <= room {
                line = candidate;
            } else {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                line = fit(word, size, bold, room);
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_split_after_the_summary_then_evenly() {
        assert_eq!(paginate(0), vec![0..0]);
        assert_eq!(paginate(5), vec![0..5]);
        assert_eq!(paginate(22), vec![0..22]);
        assert_eq!(paginate(23), vec![0..22, 22..23]);
        let p = paginate(100);
        assert_eq!(p.len(), 1 + 78usize.div_ceil(PAGE_ROWS));
        assert_eq!(p.last().unwrap().end, 100);
    }

    #[test]
    fn text_is_fitted_and_encoded() {
        assert_eq!(fit("EXT-01", 7.5, false, 100.0), "EXT-01");
        let long = "A very long location name in the basement plant room";
        let cut = fit(long, 7.5, false, 60.0);
        assert!(cut.ends_with("...") && cut.len() < long.len(), "{cut}");
        assert!(width(&cut, 7.5, false) <= 60.0);
        assert_eq!(win_ansi("Café – 5€ ✓"), b"Caf\xe9 \x96 5\x80 ?".to_vec());
    }

    #[test]
    fn notice_text_wraps_inside_the_page() {
        let long =
            "The hose reel at the north stair leaks at the gland and the drum does not turn; \
                    water pools on the landing."
                .repeat(3);
        let lines = wrap(&long, 10.0, false, 300.0);
        assert!(lines.len() > 3, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 10.0, false) <= 300.0));
        assert_eq!(
            lines.join(" "),
            long.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let pdf = render_notice(&NoticeSheet {
            heading: "Critical defect notice".into(),
            description: long,
            severity: "Critical".into(),
            ..Default::default()
        });
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
