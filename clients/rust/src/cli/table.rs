//! Plain-text tables with aligned columns, for terminals and pagers (no colours, no borders,
//! so the output also survives `grep` and `cut`).

/// Rows under a header; every column as wide as its widest cell.
pub(super) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    pub(super) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Indent every line by `n` spaces (tables nested under a heading).
    pub(super) fn indented(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table, one line per row, columns two spaces apart, no trailing spaces.
    pub(super) fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = " ".repeat(self.indent);
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` cut to at most `max` characters, with `…` when something was cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["ID", "NAME", "STATUS"]).indented(2);
        t.row(vec!["1".into(), "Pump room".into(), "in_progress".into()]);
        t.row(vec!["22".into(), "Lobby ü".into(), "".into()]);
        assert_eq!(
            t.render(),
            "  ID  NAME       STATUS\n  1   Pump room  in_progress\n  22  Lobby ü\n"
        );
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
