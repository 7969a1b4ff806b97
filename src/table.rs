//! Text tables for the command line (status, compare, verify, score, the demo's panel):
//! comfy-table, so columns line up by display width — a Chinese character takes two
//! columns — without borders, two spaces between columns, no trailing spaces.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};

/// How a column's cells are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// `header` (with each column's alignment) over `rows`, one line each.
pub fn render(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|(h, _)| Cell::new(h)));
    for r in rows {
        t.add_row(r.iter().map(Cell::new));
    }
    for (i, (_, align)) in header.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
            if *align == Align::Right {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut out = String::new();
    for line in t.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_by_display_width_with_chinese_text() {
        let rows = vec![
            vec![
                "aic".to_owned(),
                "登记未税务登记".to_owned(),
                "12".to_owned(),
            ],
            vec!["ltax_hbw".to_owned(), "name".to_owned(), "3456".to_owned()],
        ];
        let text = render(
            &[
                ("SOURCE", Align::Left),
                ("规则", Align::Left),
                ("OPEN", Align::Right),
            ],
            &rows,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // The numbers end in the same column on every line: right-aligned by width.
        let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        assert!(lines.iter().all(|l| width(l) == width(lines[0])), "{text}");
        assert!(
            lines[1].ends_with("  12") && lines[2].ends_with("3456"),
            "{text}"
        );
        // The third column starts at the same display column on every line.
        let start = |l: &str, needle: &str| width(&l[..l.find(needle).expect("cell")]);
        assert_eq!(start(lines[1], "登记"), start(lines[2], "name"), "{text}");
        assert!(
            !text.lines().any(|l| l.ends_with(' ')),
            "no trailing spaces"
        );
    }
}
