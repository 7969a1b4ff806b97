//! Work lists a bureau clerk can act on: per bureau, the open findings it must act on,
//! from the warehouse's `report.worklist` (the discrepancy as a Chinese sentence,
//! divisions by name). An xlsx workbook has a summary sheet (as-of date, generation time,
//! how complete each bureau's data is, counts per rule) and one sheet per rule that
//! says what to check, with real date cells, a frozen and filterable header, and print
//! settings (landscape, fit to width, the header repeated on every page). A CSV file is
//! UTF-8 with a byte-order mark, and writes identifiers so a spreadsheet keeps them as
//! text.

use crate::indicators::Bureau;
use crate::warehouse::{Warehouse, WarehouseError};
use crate::zone::Zone;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use rust_xlsxwriter::{
    Color, ExcelDateTime, Format, FormatAlign, FormatBorder, Workbook, Worksheet,
};
use std::path::{Path, PathBuf};
use unicode_width::UnicodeWidthStr;

/// The file format of work lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One workbook per bureau.
    Xlsx,
    /// One CSV file per bureau.
    Csv,
}

/// Which work lists to write, and how.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions<'a> {
    /// xlsx or csv.
    pub format: ExportFormat,
    /// One bureau's list, or all four.
    pub bureau: Option<Bureau>,
    /// Only this division's findings.
    pub division: Option<&'a str>,
    /// Where times are shown (`time_zone:` in the config).
    pub zone: Zone,
}

/// The columns of a rule's sheet, with the widest a column grows before it wraps.
const COLUMNS: [(&str, usize); 10] = [
    ("编号", 10),
    ("组织机构代码", 14),
    ("注册号", 18),
    ("企业名称", 40),
    ("行政区划代码", 12),
    ("行政区划", 20),
    ("不一致内容", 60),
    ("业务起始日", 12),
    ("首次发现", 18),
    ("最近发现", 18),
];

/// The row of a rule's sheet the column headers are on (0-based): below the rule's name,
/// what to check, and the sheet's counts.
const HEADER_ROW: u32 = 3;

struct Finding {
    id: i64,
    rule: String,
    rule_label: String,
    org_code: Option<String>,
    reg_no: Option<String>,
    name: Option<String>,
    division: Option<String>,
    division_name: Option<String>,
    discrepancy: String,
    since: Option<NaiveDate>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

struct RuleInfo {
    name: String,
    label: String,
    description: String,
    acting: String,
}

/// What the summary sheet says about the data behind the list.
struct Context {
    generated: DateTime<Utc>,
    as_of: Option<NaiveDate>,
    run_finished: Option<DateTime<Utc>>,
    /// Per bureau (label), complete up to (the least complete of its divisions).
    complete: Vec<(String, Option<DateTime<Utc>>)>,
    rules: Vec<RuleInfo>,
}

/// Writes one work list per bureau (all four, or only `options.bureau`), optionally for
/// one division; returns the files written with their row counts.
pub async fn export_worklists(
    wh: &Warehouse,
    dir: &Path,
    options: ExportOptions<'_>,
) -> Result<Vec<(PathBuf, usize)>, ExportError> {
    std::fs::create_dir_all(dir)?;
    let client = wh.client().await?;
    let rules = client
        .query(
            "select name, label, description, acting_label from report.rule order by seq",
            &[],
        )
        .await
        .map_err(WarehouseError::from)?
        .iter()
        .map(|r| RuleInfo {
            name: r.get(0),
            label: r.get(1),
            description: r.get(2),
            acting: r.get(3),
        })
        .collect();
    let run = client
        .query_opt(
            "select as_of, finished_at from compare.run where finished_at is not null
             order by id desc limit 1",
            &[],
        )
        .await
        .map_err(WarehouseError::from)?;
    let codes: Vec<&str> = Bureau::ALL.iter().map(|b| b.code()).collect();
    let complete = client
        .query(
            // A division complete nowhere yet (NULL: the base has not taken the source's
            // records in) leaves the whole bureau not complete, as no row does.
            "select compare.bureau_label(b.code),
                    (select case when every(c.complete_at is not null) then min(c.complete_at) end
                     from report.completeness c where c.bureau = b.code)
             from unnest($1::text[]) with ordinality b(code, n)
             order by b.n",
            &[&codes],
        )
        .await
        .map_err(WarehouseError::from)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let context = Context {
        generated: Utc::now(),
        as_of: run.as_ref().map(|r| r.get(0)),
        run_finished: run.as_ref().map(|r| r.get(1)),
        complete,
        rules,
    };
    let mut written = Vec::new();
    for b in Bureau::ALL
        .into_iter()
        .filter(|b| options.bureau.is_none_or(|x| x == *b))
    {
        let rows = client
            .query(
                "select id, rule, rule_label, org_code, reg_no, enterprise_name, division, division_name,
                        discrepancy, since, first_seen, last_seen
                 from report.worklist
                 where bureau = $1 and ($2::text is null or division = $2)
                 order by rule_seq, division, reg_no, id",
                &[&b.code(), &options.division],
            )
            .await
            .map_err(WarehouseError::from)?;
        let rows: Vec<Finding> = rows
            .iter()
            .map(|r| Finding {
                id: r.get(0),
                rule: r.get(1),
                rule_label: r.get(2),
                org_code: r.get(3),
                reg_no: r.get(4),
                name: r.get(5),
                division: r.get(6),
                division_name: r.get(7),
                discrepancy: r.get(8),
                since: r.get(9),
                first_seen: r.get(10),
                last_seen: r.get(11),
            })
            .collect();
        let stem = match options.division {
            Some(d) => format!("{}_{d}_{}", b.code(), b.label()),
            None => format!("{}_{}", b.code(), b.label()),
        };
        let path = match options.format {
            ExportFormat::Xlsx => {
                let p = dir.join(format!("{stem}.xlsx"));
                write_xlsx(&p, b, options, &context, &rows)?;
                p
            }
            ExportFormat::Csv => {
                let p = dir.join(format!("{stem}.csv"));
                write_csv(&p, options.zone, &rows)?;
                p
            }
        };
        written.push((path, rows.len()));
    }
    Ok(written)
}

fn excel_date(d: NaiveDate) -> Result<ExcelDateTime, ExportError> {
    let year = u16::try_from(d.year()).map_err(|_| ExportError::Date(d.to_string()))?;
    Ok(ExcelDateTime::from_ymd(
        year,
        d.month() as u8,
        d.day() as u8,
    )?)
}

fn excel_time(t: NaiveDateTime) -> Result<ExcelDateTime, ExportError> {
    Ok(excel_date(t.date())?.and_hms(t.hour() as u16, t.minute() as u8, t.second())?)
}

/// A sheet name Excel accepts: at most 31 characters, none of `[]:*?/\`.
fn sheet_name(label: &str) -> String {
    label
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect()
}

/// Column widths from what the cells hold, in character units: a Chinese character
/// counts two, as spreadsheets lay it out (rust_xlsxwriter's `autofit` counts it like
/// a Latin letter, which cuts Chinese text off). Capped columns wrap instead.
struct Widths(Vec<usize>);

impl Widths {
    fn of_headers(headers: &[&str]) -> Widths {
        Widths(headers.iter().map(|h| h.width()).collect())
    }

    fn see(&mut self, col: usize, text: &str) {
        let w = text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0);
        if let Some(c) = self.0.get_mut(col) {
            *c = (*c).max(w);
        }
    }

    /// Sets the columns' widths; returns them (in characters, without the margin).
    fn apply(&self, sheet: &mut Worksheet, caps: &[usize]) -> Result<Vec<usize>, ExportError> {
        let mut set = Vec::with_capacity(self.0.len());
        for (c, w) in self.0.iter().enumerate() {
            let cap = caps.get(c).copied().unwrap_or(usize::MAX);
            let w = (*w).min(cap);
            sheet.set_column_width(c as u16, (w + 2) as f64)?;
            set.push(w);
        }
        Ok(set)
    }
}

/// How many lines `text` takes in a column `width` characters wide.
fn lines_in(text: &str, width: usize) -> usize {
    text.lines()
        .map(|l| l.width().div_ceil(width.max(1)).max(1))
        .sum::<usize>()
        .max(1)
}

/// Rows holding wrapped text are made tall enough for it: spreadsheets keep a row one
/// line high unless told (LibreOffice does not grow it when it opens the file).
fn fit_rows(
    sheet: &mut Worksheet,
    rows: &[(u32, Vec<(usize, &str)>)],
    widths: &[usize],
) -> Result<(), ExportError> {
    for (row, cells) in rows {
        let lines = cells
            .iter()
            .map(|(c, t)| lines_in(t, widths.get(*c).copied().unwrap_or(10)))
            .max()
            .unwrap_or(1);
        if lines > 1 {
            sheet.set_row_height(*row, 15.0 * lines as f64)?;
        }
    }
    Ok(())
}

fn print_setup(sheet: &mut Worksheet, header: &str) {
    sheet.set_paper_size(9); // A4
    sheet.set_print_fit_to_pages(1, 0);
    sheet.set_header(format!("&L{}", header.replace('&', "&&")));
    sheet.set_footer("&C第 &P 页，共 &N 页");
}

fn write_xlsx(
    path: &Path,
    bureau: Bureau,
    options: ExportOptions<'_>,
    context: &Context,
    rows: &[Finding],
) -> Result<(), ExportError> {
    let zone = options.zone;
    let mut book = Workbook::new();
    let title = Format::new().set_bold().set_font_size(14);
    let bold = Format::new().set_bold();
    let head = Format::new()
        .set_bold()
        .set_background_color(Color::RGB(0xDDEBF7))
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Center);
    let wrap = Format::new().set_text_wrap().set_align(FormatAlign::Top);
    let date = Format::new()
        .set_num_format("yyyy-mm-dd")
        .set_align(FormatAlign::Left)
        .set_align(FormatAlign::Top);
    let time = Format::new()
        .set_num_format("yyyy-mm-dd hh:mm")
        .set_align(FormatAlign::Left)
        .set_align(FormatAlign::Top);
    let top = Format::new().set_align(FormatAlign::Top);
    let place = match (
        options.division,
        rows.iter().find_map(|r| r.division_name.clone()),
    ) {
        (Some(_), Some(name)) => format!("（{name}）"),
        (Some(code), None) => format!("（{code}）"),
        (None, _) => String::new(),
    };
    let heading = format!("{}待处理清单{place}", bureau.label());
    let zone_label = zone.label(context.generated);

    // The summary.
    let summary = book.add_worksheet();
    summary.set_name("汇总")?;
    summary.write_string_with_format(0, 0, &heading, &title)?;
    let mut widths = Widths::of_headers(&["序号", "规则", "核对内容", "待处理数"]);
    let facts: [(&str, Option<ExcelDateTime>, &Format, &str); 3] = [
        (
            "生成时间",
            Some(excel_time(zone.wall(context.generated))?),
            &time,
            "",
        ),
        (
            "比对基准日",
            context.as_of.map(excel_date).transpose()?,
            &date,
            "尚未比对",
        ),
        (
            "比对完成时间",
            context
                .run_finished
                .map(|t| excel_time(zone.wall(t)))
                .transpose()?,
            &time,
            "尚未比对",
        ),
    ];
    let mut wrapped: Vec<(u32, Vec<(usize, &str)>)> = Vec::new();
    let mut line = 2;
    for (label, value, format, missing) in facts {
        summary.write_string_with_format(line, 1, label, &bold)?;
        match value {
            Some(v) => summary.write_datetime_with_format(line, 2, v, format)?,
            None => summary.write_string(line, 2, missing)?,
        };
        line += 1;
    }
    summary.write_string_with_format(line, 1, "时区", &bold)?;
    summary.write_string(line, 2, &zone_label)?;
    line += 2;
    summary.write_string_with_format(line, 1, "部门", &head)?;
    summary.write_string_with_format(line, 2, "数据完整至", &head)?;
    line += 1;
    for (label, at) in &context.complete {
        summary.write_string(line, 1, label)?;
        match at {
            Some(t) => {
                summary.write_datetime_with_format(line, 2, excel_time(zone.wall(*t))?, &time)?
            }
            None => summary.write_string(line, 2, "尚不完整（未接入或未完成首次同步）")?,
        };
        line += 1;
    }
    line += 1;
    for (c, h) in ["序号", "规则", "核对内容", "待处理数"].iter().enumerate() {
        summary.write_string_with_format(line, c as u16, *h, &head)?;
    }
    let counts_header = line;
    line += 1;
    for (i, rule) in context.rules.iter().enumerate() {
        let n = rows.iter().filter(|r| r.rule == rule.name).count();
        summary.write_number_with_format(line, 0, (i + 1) as f64, &top)?;
        summary.write_string_with_format(line, 1, &rule.label, &top)?;
        summary.write_string_with_format(line, 2, &rule.description, &wrap)?;
        summary.write_number_with_format(line, 3, n as f64, &top)?;
        widths.see(1, &rule.label);
        widths.see(2, &rule.description);
        wrapped.push((line, vec![(2, rule.description.as_str())]));
        line += 1;
    }
    summary.write_string_with_format(line, 1, "合计", &bold)?;
    summary.write_number_with_format(line, 3, rows.len() as f64, &bold)?;
    widths.see(1, "比对完成时间");
    widths.see(2, "2026-12-03 16:05");
    widths.see(2, "尚不完整（未接入或未完成首次同步）");
    let set = widths.apply(summary, &[6, 30, 60, 10])?;
    fit_rows(summary, &wrapped, &set)?;
    summary.set_repeat_rows(counts_header, counts_header)?;
    summary.set_landscape();
    print_setup(summary, &heading);
    summary.set_print_fit_to_pages(1, 1);

    // A sheet per rule with findings.
    for rule in &context.rules {
        let these: Vec<&Finding> = rows.iter().filter(|r| r.rule == rule.name).collect();
        if these.is_empty() {
            continue;
        }
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(&rule.label))?;
        let last_col = (COLUMNS.len() - 1) as u16;
        sheet.write_string_with_format(0, 0, &rule.label, &title)?;
        sheet.merge_range(
            1,
            0,
            1,
            last_col,
            &format!("核对内容：{}", rule.description),
            &wrap,
        )?;
        sheet.write_string(
            2,
            0,
            format!(
                "需处理部门：{}。本表 {} 条，生成于 {}（{zone_label}）。",
                rule.acting,
                these.len(),
                zone.wall(context.generated).format("%Y-%m-%d %H:%M")
            ),
        )?;
        let headers: Vec<&str> = COLUMNS.iter().map(|(h, _)| *h).collect();
        let mut widths = Widths::of_headers(&headers);
        for (c, h) in headers.iter().enumerate() {
            sheet.write_string_with_format(HEADER_ROW, c as u16, *h, &head)?;
        }
        let mut wrapped: Vec<(u32, Vec<(usize, &str)>)> = Vec::new();
        for (i, r) in these.iter().enumerate() {
            let row = HEADER_ROW + 1 + i as u32;
            wrapped.push((
                row,
                vec![
                    (3, r.name.as_deref().unwrap_or("")),
                    (6, r.discrepancy.as_str()),
                ],
            ));
            let texts: [(usize, Option<&str>); 6] = [
                (1, r.org_code.as_deref()),
                (2, r.reg_no.as_deref()),
                (3, r.name.as_deref()),
                (4, r.division.as_deref()),
                (5, r.division_name.as_deref()),
                (6, Some(&r.discrepancy)),
            ];
            sheet.write_number_with_format(row, 0, r.id as f64, &top)?;
            widths.see(0, &r.id.to_string());
            for (c, text) in texts {
                if let Some(t) = text {
                    let format = if COLUMNS[c].1 >= 40 { &wrap } else { &top };
                    sheet.write_string_with_format(row, c as u16, t, format)?;
                    widths.see(c, t);
                }
            }
            // A business date from a bureau's data a spreadsheet cannot hold (before
            // 1900) is written as text rather than failing the list.
            match r.since.map(|d| (d, excel_date(d))) {
                Some((_, Ok(v))) => {
                    sheet.write_datetime_with_format(row, 7, v, &date)?;
                }
                Some((d, Err(_))) => {
                    sheet.write_string_with_format(row, 7, d.to_string(), &top)?;
                }
                None => {}
            }
            sheet.write_datetime_with_format(
                row,
                8,
                excel_time(zone.wall(r.first_seen))?,
                &time,
            )?;
            sheet.write_datetime_with_format(row, 9, excel_time(zone.wall(r.last_seen))?, &time)?;
        }
        // Date and time cells are as wide as their formats.
        widths.see(7, "2026-12-03");
        widths.see(8, "2026-12-03 16:05");
        widths.see(9, "2026-12-03 16:05");
        let caps: Vec<usize> = COLUMNS.iter().map(|(_, cap)| *cap).collect();
        let set = widths.apply(sheet, &caps)?;
        fit_rows(sheet, &wrapped, &set)?;
        // What to check spans every column.
        let merged_width: usize = set.iter().map(|w| w + 2).sum();
        sheet.set_row_height(
            1,
            15.0 * lines_in(&format!("核对内容：{}", rule.description), merged_width) as f64,
        )?;
        let last_row = HEADER_ROW + these.len() as u32;
        sheet.set_freeze_panes(HEADER_ROW + 1, 0)?;
        sheet.autofilter(HEADER_ROW, 0, last_row, last_col)?;
        sheet.set_repeat_rows(HEADER_ROW, HEADER_ROW)?;
        sheet.set_landscape();
        print_setup(sheet, &format!("{heading}：{}", rule.label));
    }
    book.save(path)?;
    Ok(())
}

/// A CSV cell: quoted when it must be; text that a spreadsheet would take for a formula
/// (`=`, `+`, `-`, `@` first) starts with an apostrophe.
fn csv_text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// An identifier a spreadsheet keeps as text (a 15-digit registration number would
/// otherwise become 1.50302E+14, and a leading zero would go): `="150302000000100"`,
/// which Excel, WPS and LibreOffice show as the digits.
fn csv_identifier(s: Option<&str>) -> String {
    match s {
        None | Some("") => String::new(),
        Some(s) => format!("\"=\"\"{}\"\"\"", s.replace('"', "")),
    }
}

fn write_csv(path: &Path, zone: Zone, rows: &[Finding]) -> Result<(), ExportError> {
    // A UTF-8 byte-order mark so spreadsheet programs read the Chinese correctly.
    let mut out = String::from("\u{feff}规则,");
    out.push_str(
        &COLUMNS
            .iter()
            .map(|(h, _)| *h)
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    let time = |t: DateTime<Utc>| zone.wall(t).format("%Y-%m-%d %H:%M").to_string();
    for r in rows {
        let cells = [
            csv_text(&r.rule_label),
            r.id.to_string(),
            csv_identifier(r.org_code.as_deref()),
            csv_identifier(r.reg_no.as_deref()),
            csv_text(r.name.as_deref().unwrap_or("")),
            csv_identifier(r.division.as_deref()),
            csv_text(r.division_name.as_deref().unwrap_or("")),
            csv_text(&r.discrepancy),
            r.since.map(|d| d.to_string()).unwrap_or_default(),
            time(r.first_seen),
            time(r.last_seen),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The warehouse.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// Writing a file.
    #[error("writing the work list: {0}")]
    Io(#[from] std::io::Error),
    /// Building the workbook.
    #[error("building the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// A date a spreadsheet cannot hold (before 1900).
    #[error("a date a spreadsheet cannot hold: {0}")]
    Date(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_identifiers_as_text_and_defuses_formulas() {
        assert_eq!(
            csv_identifier(Some("150302000000100")),
            "\"=\"\"150302000000100\"\"\""
        );
        assert_eq!(csv_identifier(Some("07695382")), "\"=\"\"07695382\"\"\"");
        assert_eq!(csv_identifier(None), "");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("甲公司，乙分公司"), "甲公司，乙分公司");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
    }

    #[test]
    fn widths_count_chinese_characters_twice_and_wrap_past_the_cap() {
        let mut w = Widths::of_headers(&["编号", "企业名称"]);
        w.see(0, "12");
        w.see(1, "乌海市海勃湾区商贸有限公司");
        assert_eq!(w.0, vec![4, 26]);
        w.see(1, &"长".repeat(100));
        assert_eq!(w.0[1], 200);
    }

    #[test]
    fn dates_a_spreadsheet_cannot_hold_are_refused_for_text() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert!(excel_date(d(2006, 8, 1)).is_ok());
        assert!(excel_date(d(1850, 1, 1)).is_err());
        assert!(excel_date(d(-5, 1, 1)).is_err());
    }

    #[test]
    fn sheet_names_are_what_excel_accepts() {
        assert_eq!(
            sheet_name("已办照未办税务登记（漏征漏管户）"),
            "已办照未办税务登记（漏征漏管户）"
        );
        assert_eq!(sheet_name("a/b:c"), "abc");
        assert_eq!(sheet_name(&"长".repeat(40)).chars().count(), 31);
    }
}
