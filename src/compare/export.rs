//! Work lists: per bureau, the open findings it must act on, with Chinese headers — an
//! xlsx workbook with a summary sheet and a sheet per rule, or a CSV file.

use crate::indicators::Bureau;
use crate::rules::Rule;
use crate::warehouse::{Warehouse, WarehouseError};
use chrono::NaiveDate;
use rust_xlsxwriter::{Format, Workbook};
use std::path::{Path, PathBuf};

/// The file format of work lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One workbook per bureau.
    Xlsx,
    /// One CSV file per bureau.
    Csv,
}

const HEADERS: [&str; 10] = [
    "规则",
    "组织机构代码",
    "注册号",
    "企业名称",
    "行政区划",
    "不一致内容",
    "业务起始日",
    "首次发现",
    "最近发现",
    "编号",
];

struct Row {
    rule: String,
    org_code: Option<String>,
    reg_no: Option<String>,
    name: Option<String>,
    division: Option<String>,
    detail: serde_json::Value,
    since: Option<NaiveDate>,
    first_seen: String,
    last_seen: String,
    id: i64,
}

impl Row {
    fn cells(&self) -> [String; 10] {
        let label = Rule::from_name(&self.rule).map(|r| r.label()).unwrap_or("");
        [
            label.to_owned(),
            self.org_code.clone().unwrap_or_default(),
            self.reg_no.clone().unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
            self.division.clone().unwrap_or_default(),
            self.detail.to_string(),
            self.since.map(|d| d.to_string()).unwrap_or_default(),
            self.first_seen.clone(),
            self.last_seen.clone(),
            self.id.to_string(),
        ]
    }
}

/// Writes one work list per bureau (all four, or only `bureau`), optionally for one
/// division; returns the files written with their row counts.
pub async fn export_worklists(
    wh: &Warehouse,
    dir: &Path,
    format: ExportFormat,
    bureau: Option<Bureau>,
    division: Option<&str>,
) -> Result<Vec<(PathBuf, usize)>, ExportError> {
    std::fs::create_dir_all(dir)?;
    let client = wh.client().await?;
    let mut written = Vec::new();
    for b in Bureau::ALL
        .into_iter()
        .filter(|b| bureau.is_none_or(|x| x == *b))
    {
        let rows = client
            .query(
                "select rule, org_code, reg_no, enterprise_name, division, detail, since,
                        to_char(first_seen, 'YYYY-MM-DD HH24:MI'), to_char(last_seen, 'YYYY-MM-DD HH24:MI'), id
                 from compare.worklist
                 where bureau = $1 and ($2::text is null or division = $2)
                 order by rule, division, reg_no, id",
                &[&b.code(), &division],
            )
            .await
            .map_err(WarehouseError::from)?;
        let rows: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                rule: r.get(0),
                org_code: r.get(1),
                reg_no: r.get(2),
                name: r.get(3),
                division: r.get(4),
                detail: r.get(5),
                since: r.get(6),
                first_seen: r.get(7),
                last_seen: r.get(8),
                id: r.get(9),
            })
            .collect();
        let stem = match division {
            Some(d) => format!("{}_{d}_{}", b.code(), b.label()),
            None => format!("{}_{}", b.code(), b.label()),
        };
        let path = match format {
            ExportFormat::Xlsx => {
                let p = dir.join(format!("{stem}.xlsx"));
                write_xlsx(&p, b, &rows)?;
                p
            }
            ExportFormat::Csv => {
                let p = dir.join(format!("{stem}.csv"));
                write_csv(&p, &rows)?;
                p
            }
        };
        written.push((path, rows.len()));
    }
    Ok(written)
}

fn write_xlsx(path: &Path, bureau: Bureau, rows: &[Row]) -> Result<(), ExportError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let summary = book.add_worksheet();
    summary.set_name("汇总")?;
    summary.write_string_with_format(0, 0, format!("{}待处理清单", bureau.label()), &bold)?;
    summary.write_string_with_format(1, 0, "规则", &bold)?;
    summary.write_string_with_format(1, 1, "规则代码", &bold)?;
    summary.write_string_with_format(1, 2, "待处理数", &bold)?;
    let mut line = 2;
    for rule in Rule::ALL {
        let n = rows.iter().filter(|r| r.rule == rule.name()).count();
        if n == 0 {
            continue;
        }
        summary.write_string(line, 0, rule.label())?;
        summary.write_string(line, 1, rule.name())?;
        summary.write_number(line, 2, n as f64)?;
        line += 1;
    }
    summary.write_string_with_format(line, 0, "合计", &bold)?;
    summary.write_number(line, 2, rows.len() as f64)?;
    summary.set_column_width(0, 36)?;
    summary.set_column_width(1, 32)?;
    for rule in Rule::ALL {
        let these: Vec<&Row> = rows.iter().filter(|r| r.rule == rule.name()).collect();
        if these.is_empty() {
            continue;
        }
        let sheet = book.add_worksheet();
        // Sheet names are at most 31 characters and may not contain some punctuation.
        let name: String = rule
            .label()
            .chars()
            .filter(|c| !"[]:*?/\\（）".contains(*c))
            .take(31)
            .collect();
        sheet.set_name(name)?;
        for (c, h) in HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, r) in these.iter().enumerate() {
            for (c, v) in r.cells().iter().enumerate() {
                sheet.write_string(i as u32 + 1, c as u16, v)?;
            }
        }
        sheet.set_column_width(3, 40)?;
        sheet.set_column_width(5, 60)?;
    }
    book.save(path)?;
    Ok(())
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<(), ExportError> {
    // A UTF-8 byte-order mark so spreadsheet programs read the Chinese correctly.
    let mut out = String::from("\u{feff}");
    out.push_str(&HEADERS.join(","));
    out.push('\n');
    for r in rows {
        let cells: Vec<String> = r
            .cells()
            .iter()
            .map(|c| {
                if c.contains([',', '"', '\n']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
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
}
