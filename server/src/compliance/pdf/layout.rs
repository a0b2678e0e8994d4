//! A small flowing layout on top of the report writer's primitives (fonts, text fitting,
//! encoding, compression in [`super`]): a document is a list of blocks — title, headings,
//! label/value facts, wrapped paragraphs, tables whose header repeats on every page they run
//! over, a signature box — laid out top to bottom over as many A4 pages as they need, each
//! page headed with the document's name and footed with "page n of N". The records of
//! `crate::records` (logbook, condition report, statement export) are printed with it.

use chrono::{DateTime, SecondsFormat, Utc};
use pdf_writer::{Content, Date, Filter, Name, Pdf, Rect, Ref, TextStr};

use super::{deflate, fit, text, width, BOLD, FOOTER_Y, MARGIN, PAD, REGULAR};

/// A colour for a banner or a flagged cell.
pub type Rgb = (f32, f32, f32);

pub const GREEN: Rgb = (0.0, 0.45, 0.15);
pub const AMBER: Rgb = (0.65, 0.45, 0.0);
pub const ORANGE: Rgb = (0.85, 0.35, 0.0);
pub const RED: Rgb = (0.75, 0.0, 0.0);

/// A table column: heading and relative width (the widths are scaled to the page).
pub struct Column {
    pub heading: &'static str,
    pub weight: f32,
}

pub const fn col(heading: &'static str, weight: f32) -> Column {
    Column { heading, weight }
}

/// A table cell: its text and, when set, a colour it is printed in (bold).
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub flag: Option<Rgb>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self { text, flag: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            flag: None,
        }
    }
}

impl Cell {
    pub fn flagged(text: impl Into<String>, flag: Option<Rgb>) -> Self {
        Self {
            text: text.into(),
            flag,
        }
    }
}

pub enum Block {
    /// The document's title and a line under it.
    Title { title: String, subtitle: String },
    /// A section heading.
    Heading(String),
    /// Label/value pairs, two pairs per line.
    Facts(Vec<(String, String)>),
    /// Text wrapped to the page width.
    Paragraph(String),
    /// A coloured band with white bold text.
    Banner { text: String, colour: Rgb },
    /// A table; cells wrap onto at most three lines.
    Table {
        columns: Vec<Column>,
        rows: Vec<Vec<Cell>>,
        /// Printed in place of the rows when there are none.
        empty: String,
    },
    /// A framed box of label/value lines (a signature or a statement's signatory).
    Signature {
        heading: String,
        lines: Vec<(String, String)>,
    },
    /// Vertical space, in points.
    Space(f32),
}

pub struct Document {
    /// Names the document on every page after the first and in the PDF's metadata.
    pub title: String,
    pub landscape: bool,
    /// Left part of every footer (the page number is on the right).
    pub footer: String,
    pub generated_at: DateTime<Utc>,
    pub blocks: Vec<Block>,
}

const LINE: f32 = 9.0;
const CELL_FONT: f32 = 7.5;
const MAX_CELL_LINES: usize = 3;
/// The lowest a block may reach (clear of the footer).
const BOTTOM: f32 = 40.0;

struct Pages {
    w: f32,
    h: f32,
    title: String,
    done: Vec<Content>,
    c: Content,
    y: f32,
}

impl Pages {
    fn new(doc: &Document) -> Self {
        let (w, h) = if doc.landscape {
            (841.89, 595.28)
        } else {
            (595.28, 841.89)
        };
        Self {
            w,
            h,
            title: doc.title.clone(),
            done: Vec::new(),
            c: Content::new(),
            y: h - MARGIN,
        }
    }

    fn room(&self) -> f32 {
        self.w - 2.0 * MARGIN
    }

    /// Start a new page unless `need` points still fit on this one.
    fn ensure(&mut self, need: f32) -> bool {
        if self.y - need >= BOTTOM {
            return false;
        }
        let full = std::mem::replace(&mut self.c, Content::new());
        self.done.push(full);
        let y = self.h - MARGIN - 8.0;
        text(&mut self.c, BOLD, 9.0, MARGIN, y, &self.title);
        self.c.set_stroke_gray(0.6).set_line_width(0.5);
        self.c
            .move_to(MARGIN, y - 4.0)
            .line_to(self.w - MARGIN, y - 4.0)
            .stroke();
        self.y = y - 12.0;
        true
    }
}

/// `s` broken into lines of at most `room` points (words longer than a line are cut).
pub fn wrap(s: &str, size: f32, bold: bool, room: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.split('\n') {
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
                line = if width(word, size, bold) <= room {
                    word.to_owned()
                } else {
                    fit(word, size, bold, room)
                };
            }
        }
        lines.push(line);
    }
    lines
}

pub fn render(doc: &Document) -> Vec<u8> {
    let mut p = Pages::new(doc);
    for block in &doc.blocks {
        match block {
            Block::Title { title, subtitle } => {
                p.ensure(40.0);
                p.y -= 14.0;
                text(&mut p.c, BOLD, 16.0, MARGIN, p.y, title);
                p.y -= 13.0;
                text(&mut p.c, REGULAR, 9.0, MARGIN, p.y, subtitle);
                p.y -= 8.0;
            }
            Block::Heading(h) => {
                // Room for the heading and the start of what follows it.
                p.ensure(70.0);
                p.y -= 16.0;
                text(&mut p.c, BOLD, 11.0, MARGIN, p.y, h);
                p.y -= 4.0;
            }
            Block::Facts(pairs) => {
                let half = p.room() / 2.0;
                for pair in pairs.chunks(2) {
                    p.ensure(12.0);
                    p.y -= 12.0;
                    for (n, (label, value)) in pair.iter().enumerate() {
                        let x = MARGIN + half * n as f32;
                        let lw = width(label, 8.5, false).max(110.0) + 6.0;
                        text(&mut p.c, REGULAR, 8.5, x, p.y, label);
                        let shown = fit(value, 8.5, true, half - lw - 8.0);
                        text(&mut p.c, BOLD, 8.5, x + lw, p.y, &shown);
                    }
                }
                p.y -= 2.0;
            }
            Block::Paragraph(s) => {
                for line in wrap(s, 8.5, false, p.room()) {
                    p.ensure(11.0);
                    p.y -= 11.0;
                    text(&mut p.c, REGULAR, 8.5, MARGIN, p.y, &line);
                }
            }
            Block::Banner { text: t, colour } => {
                p.ensure(28.0);
                p.y -= 24.0;
                let w = width(t, 12.0, true) + 20.0;
                let y = p.y;
                p.c.set_fill_rgb(colour.0, colour.1, colour.2)
                    .rect(MARGIN, y - 5.0, w, 20.0)
                    .fill_nonzero();
                p.c.set_fill_gray(1.0);
                text(&mut p.c, BOLD, 12.0, MARGIN + 8.0, p.y + 1.0, t);
                p.c.set_fill_gray(0.0);
                p.y -= 6.0;
            }
            Block::Table {
                columns,
                rows,
                empty,
            } => table(&mut p, columns, rows, empty),
            Block::Signature { heading, lines } => {
                let h = 22.0 + 13.0 * lines.len() as f32;
                p.ensure(h + 8.0);
                p.y -= 8.0;
                let top = p.y;
                let w = p.room().min(420.0);
                p.c.set_stroke_gray(0.3).set_line_width(0.8);
                p.c.rect(MARGIN, top - h, w, h).stroke();
                text(&mut p.c, BOLD, 10.0, MARGIN + 8.0, top - 15.0, heading);
                for (n, (label, value)) in lines.iter().enumerate() {
                    let y = top - 30.0 - 13.0 * n as f32;
                    text(&mut p.c, REGULAR, 8.5, MARGIN + 8.0, y, label);
                    text(&mut p.c, BOLD, 8.5, MARGIN + 130.0, y, value);
                }
                p.y = top - h;
            }
            Block::Space(s) => p.y -= s,
        }
    }
    let last = std::mem::replace(&mut p.c, Content::new());
    p.done.push(last);
    write(doc, p)
}

fn table(p: &mut Pages, columns: &[Column], rows: &[Vec<Cell>], empty: &str) {
    let total: f32 = columns.iter().map(|c| c.weight).sum();
    let widths: Vec<f32> = columns
        .iter()
        .map(|c| c.weight / total * p.room())
        .collect();
    let room = p.room();
    let header = |p: &mut Pages| {
        p.y -= 12.0;
        let y = p.y;
        p.c.set_fill_gray(0.85)
            .rect(MARGIN, y, room, 12.0)
            .fill_nonzero();
        p.c.set_fill_gray(0.0);
        let mut x = MARGIN;
        for (c, w) in columns.iter().zip(&widths) {
            let shown = fit(c.heading, CELL_FONT, true, w - 2.0 * PAD);
            text(&mut p.c, BOLD, CELL_FONT, x + PAD, p.y + 3.5, &shown);
            x += w;
        }
    };
    p.ensure(36.0);
    header(p);
    if rows.is_empty() {
        p.y -= 12.0;
        text(&mut p.c, REGULAR, 8.0, MARGIN + PAD, p.y + 3.5, empty);
    }
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<Vec<String>> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| {
                let mut lines = wrap(&cell.text, CELL_FONT, cell.flag.is_some(), w - 2.0 * PAD);
                if lines.len() > MAX_CELL_LINES {
                    lines.truncate(MAX_CELL_LINES);
                    let last = &mut lines[MAX_CELL_LINES - 1];
                    *last = fit(&format!("{last} ..."), CELL_FONT, false, w - 2.0 * PAD);
                }
                lines
            })
            .collect();
        let height = 3.0 + LINE * cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32;
        if p.ensure(height) {
            header(p);
        }
        p.y -= height;
        let y = p.y;
        if n % 2 == 1 {
            p.c.set_fill_gray(0.95)
                .rect(MARGIN, y, room, height)
                .fill_nonzero();
            p.c.set_fill_gray(0.0);
        }
        let mut x = MARGIN;
        for ((lines, cell), w) in cells.iter().zip(row).zip(&widths) {
            if let Some((r, g, b)) = cell.flag {
                p.c.set_fill_rgb(r, g, b);
            }
            let font = if cell.flag.is_some() { BOLD } else { REGULAR };
            for (k, line) in lines.iter().enumerate() {
                let y = p.y + height - LINE * (k as f32 + 1.0) + 0.5;
                text(&mut p.c, font, CELL_FONT, x + PAD, y, line);
            }
            if cell.flag.is_some() {
                p.c.set_fill_gray(0.0);
            }
            x += w;
        }
    }
    let y = p.y;
    p.c.set_stroke_gray(0.6).set_line_width(0.5);
    p.c.move_to(MARGIN, y).line_to(MARGIN + room, y).stroke();
    p.y -= 4.0;
}

fn write(doc: &Document, mut p: Pages) -> Vec<u8> {
    let total = p.done.len();
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
    let g = doc.generated_at;
    pdf.document_info(info)
        .title(TextStr(&doc.title))
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
    let footer = format!(
        "{} - generated by FireMode {}",
        doc.footer,
        g.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    for (i, c) in p.done.iter_mut().enumerate() {
        text(c, REGULAR, 7.0, MARGIN, FOOTER_Y, &footer);
        let right = format!("Page {} of {total}", i + 1);
        text(
            c,
            REGULAR,
            7.0,
            p.w - MARGIN - width(&right, 7.0, false),
            FOOTER_Y,
            &right,
        );
        let c = std::mem::replace(c, Content::new());
        let data = deflate(&c.finish());
        pdf.stream(content_ref(i), &data)
            .filter(Filter::FlateDecode);
        let mut page = pdf.page(page_ref(i));
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, p.w, p.h))
            .contents(content_ref(i));
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_lines_inside_the_room() {
        let lines = wrap(
            "Sprinkler system monthly valve, gauge and alarm test at the main valve set",
            7.5,
            false,
            80.0,
        );
        assert!(lines.len() > 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| width(l, 7.5, false) <= 80.0),
            "{lines:?}"
        );
        assert_eq!(wrap("", 7.5, false, 80.0), vec![String::new()]);
    }

    #[test]
    fn long_tables_run_over_pages_with_their_header() {
        let rows: Vec<Vec<Cell>> = (0..200)
            .map(|i| vec![Cell::from(format!("row {i}")), Cell::from("x")])
            .collect();
        let doc = Document {
            title: "Logbook - Test".into(),
            landscape: true,
            footer: "Test".into(),
            generated_at: Utc::now(),
            blocks: vec![Block::Table {
                columns: vec![col("A", 1.0), col("B", 1.0)],
                rows,
                empty: String::new(),
            }],
        };
        let pdf = render(&doc);
        assert!(pdf.starts_with(b"%PDF-"));
        let count = |needle: &[u8]| pdf.windows(needle.len()).filter(|w| *w == needle).count();
        let pages = count(b"/Type /Page") - count(b"/Type /Pages");
        // 200 rows of 12 pt on pages of about 500 pt of table.
        assert!((4..=7).contains(&pages), "{pages} pages");
    }
}
