//! What the people who use the results see: a bureau clerk's work lists (xlsx read back
//! cell by cell and in its XML — widths, frozen header, filter, print setup — and
//! rendered by LibreOffice; CSV as a spreadsheet reads it), and an analyst's `report`
//! schema (`select *` as ebis_analyst, masked ID numbers, every column documented, the
//! README's questions run through psql).

use crate::support::city::City;
use crate::support::{TempDir, unique_name};
use calamine::{Data, Reader, Xlsx, open_workbook};
use chrono::Days;
use ebis::compare::{ExportFormat, ExportOptions};
use ebis::demo::world::{Options, World};
use ebis::indicators::Bureau;
use ebis::rules::Rule;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use unicode_width::UnicodeWidthStr;

const HEADERS: [&str; 10] = [
    "编号",
    "组织机构代码",
    "注册号",
    "企业名称",
    "行政区划代码",
    "行政区划",
    "不一致内容",
    "业务起始日",
    "首次发现",
    "最近发现",
];

/// A city with a positive case of every rule.
async fn city_with_every_rule() -> (City, BTreeMap<Rule, usize>) {
    let mut w = World::empty(Options {
        discrepancy_rate: 0.0,
        noise_rate: 0.0,
        ..Options::new(0, 16)
    });
    let old = w.options.as_of - Days::new(400);
    let mut cases = BTreeMap::new();
    for rule in Rule::ALL {
        if rule == Rule::UnlicensedBusiness {
            continue;
        }
        let district = if rule == Rule::NtaxLtaxMismatch {
            "150302"
        } else {
            "150303"
        };
        for _ in 0..40 {
            let i = w.establish_in(old, district);
            if w.inject(i, rule) {
                cases.insert(rule, i);
                break;
            }
        }
        assert!(cases.contains_key(&rule), "no positive for {}", rule.name());
    }
    w.report_named(
        Bureau::Ltax,
        "乌海市海勃湾区老王烧烤店",
        "内蒙古乌海市海勃湾区滨河路8号",
    );
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    city.compare().await;
    (city, cases)
}

/// The XML parts of an xlsx file, by name.
fn xlsx_parts(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).expect("xlsx");
    let mut zip = zip::ZipArchive::new(file).expect("an xlsx is a zip");
    let mut parts = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("part");
        let mut text = String::new();
        if f.read_to_string(&mut text).is_ok() {
            parts.insert(f.name().expect("part name").into_owned(), text);
        }
    }
    parts
}

/// `name="value"` of the first `<tag …>` in `xml`.
fn attr(xml: &str, tag: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag} "))?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(element[at..at + element[at..].find('"')?].to_owned())
}

/// Column widths of a sheet (0-based column → width in characters).
fn col_widths(xml: &str) -> BTreeMap<usize, f64> {
    let mut out = BTreeMap::new();
    for part in xml.split("<col ").skip(1) {
        let element = &part[..part.find('>').expect("col")];
        let get = |n: &str| attr(&format!("<col {element}>"), "col", n);
        let (min, max, width): (usize, usize, f64) = (
            get("min").and_then(|v| v.parse().ok()).expect("min"),
            get("max").and_then(|v| v.parse().ok()).expect("max"),
            get("width").and_then(|v| v.parse().ok()).expect("width"),
        );
        for c in min..=max {
            out.insert(c - 1, width);
        }
    }
    out
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::Float(f) if f.fract() == 0.0 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clerks_work_lists_read_back_cell_by_cell_and_print() {
    let (city, cases) = city_with_every_rule().await;
    let pg = city.pg.client().await;

    // The rules' labels live in the warehouse, the same as the program's.
    for rule in Rule::ALL {
        let label: String = pg
            .query_one(
                "select label from compare.rule where name = $1",
                &[&rule.name()],
            )
            .await
            .expect("rule")
            .get(0);
        assert_eq!(label, rule.label());
    }

    let out = TempDir::new("ebis_worklists");
    let files = ebis::compare::export_worklists(
        &city.wh,
        out.path(),
        ExportOptions {
            format: ExportFormat::Xlsx,
            bureau: None,
            division: None,
            zone: ebis::zone::Zone::parse("+08:00").expect("zone"),
        },
    )
    .await
    .expect("export");
    assert_eq!(files.len(), 4, "one workbook per bureau");

    // The sentence a clerk reads for the tax-closed case, from what the bureaus hold.
    let closed = &city.world.enterprises[cases[&Rule::TaxClosedAicActive]];
    let mut want_closed = vec!["工商：存续".to_owned()];
    for (label, tax) in [("国税", &closed.ntax), ("地税", &closed.ltax)] {
        if let Some((_, on, _)) = tax.as_ref().and_then(|t| t.dereg.as_ref()) {
            want_closed.push(format!("{label}：{on} 已注销"));
        }
    }
    let want_closed = want_closed.join("；");
    let mut saw_closed = false;

    for (path, rows) in &files {
        let bureau = ["aic", "qts", "ntax", "ltax"]
            .into_iter()
            .find(|b| {
                path.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(b))
            })
            .expect("bureau in the file name");
        let per_rule: BTreeMap<String, i64> = pg
            .query(
                "select rule, count(*) from report.worklist where bureau = $1 group by rule",
                &[&bureau],
            )
            .await
            .expect("counts")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(*rows as i64, per_rule.values().sum::<i64>(), "{bureau}");
        let mut book: Xlsx<_> = open_workbook(path).expect("open xlsx");
        let sheets = book.sheet_names().to_vec();
        let want_sheets: Vec<String> = std::iter::once("汇总".to_owned())
            .chain(
                Rule::ALL
                    .iter()
                    .filter(|r| per_rule.contains_key(r.name()))
                    .map(|r| r.label().to_owned()),
            )
            .collect();
        assert_eq!(
            sheets, want_sheets,
            "{bureau}: a sheet per rule with findings"
        );
        let parts = xlsx_parts(path);
        let workbook = &parts["xl/workbook.xml"];

        // The summary: when, as of when, how complete, how many per rule.
        let summary = book.worksheet_range("汇总").expect("summary");
        let row_of = |label: &str| {
            summary
                .rows()
                .find(|r| r.iter().any(|c| cell_text(c) == label))
                .unwrap_or_else(|| panic!("{bureau}: no row {label}"))
                .to_vec()
        };
        for label in ["生成时间", "比对基准日", "比对完成时间"] {
            assert!(
                matches!(row_of(label)[2], Data::DateTime(_)),
                "{bureau}: {label} is a date cell: {:?}",
                row_of(label)
            );
        }
        assert_eq!(cell_text(&row_of("时区")[2]), "UTC+08:00");
        for label in ["工商", "质监", "国税", "地税"] {
            assert!(
                matches!(row_of(label)[2], Data::DateTime(_)),
                "{bureau}: {label}'s data complete-up-to is a date cell"
            );
        }
        for rule in Rule::ALL {
            let r = row_of(rule.label());
            assert_eq!(
                cell_text(&r[3]),
                per_rule.get(rule.name()).copied().unwrap_or(0).to_string(),
                "{bureau}: count of {}",
                rule.name()
            );
            assert!(
                cell_text(&r[2]).chars().count() > 20,
                "what {} checks",
                rule.name()
            );
        }
        assert_eq!(cell_text(&row_of("合计")[3]), rows.to_string());
        let summary_xml = &parts["xl/worksheets/sheet1.xml"];
        // One page: fitToHeight is left out when it is 1, Excel's default.
        assert!(matches!(
            attr(summary_xml, "pageSetup", "fitToHeight").as_deref(),
            None | Some("1")
        ));
        assert!(summary_xml.contains("<pageSetUpPr fitToPage=\"1\"/>"));

        // Each rule's sheet.
        for (n, sheet) in sheets.iter().enumerate().skip(1) {
            let rule = Rule::ALL
                .into_iter()
                .find(|r| r.label() == sheet)
                .expect("a rule's sheet");
            let range = book.worksheet_range(sheet).expect("sheet");
            let all: Vec<Vec<Data>> = range.rows().map(<[Data]>::to_vec).collect();
            assert_eq!(cell_text(&all[0][0]), rule.label());
            assert!(cell_text(&all[1][0]).starts_with("核对内容："), "{sheet}");
            let header: Vec<String> = all[3].iter().map(cell_text).collect();
            assert_eq!(header, HEADERS, "{sheet}");
            let data = &all[4..];
            assert_eq!(data.len() as i64, per_rule[rule.name()], "{bureau} {sheet}");
            for r in data {
                let id: i64 = cell_text(&r[0]).parse().expect("finding number");
                let sentence: String = pg
                    .query_one(
                        "select compare.describe(rule, detail) from compare.finding where id = $1",
                        &[&id],
                    )
                    .await
                    .expect("finding")
                    .get(0);
                assert_eq!(cell_text(&r[6]), sentence, "{sheet} #{id}");
                assert!(
                    !sentence.contains('{'),
                    "no JSON in the sentence: {sentence}"
                );
                let want_division = match cell_text(&r[4]).as_str() {
                    "150302" => "乌海市海勃湾区",
                    "150303" => "乌海市海南区",
                    "150304" => "乌海市乌达区",
                    other => panic!("{sheet}: division {other}"),
                };
                assert_eq!(cell_text(&r[5]), want_division);
                assert!(matches!(r[8], Data::DateTime(_)), "首次发现 is a date cell");
                assert!(matches!(r[9], Data::DateTime(_)), "最近发现 is a date cell");
                assert!(
                    matches!(r[7], Data::DateTime(_) | Data::Empty),
                    "业务起始日 is a date cell: {:?}",
                    r[7]
                );
                if rule == Rule::TaxClosedAicActive {
                    assert_eq!(cell_text(&r[6]), want_closed);
                    saw_closed = true;
                }
            }
            let xml = &parts[&format!("xl/worksheets/sheet{}.xml", n + 1)];
            // Frozen below the header, filterable over the findings.
            assert_eq!(
                attr(xml, "pane", "state").as_deref(),
                Some("frozen"),
                "{sheet}"
            );
            assert_eq!(attr(xml, "pane", "topLeftCell").as_deref(), Some("A5"));
            assert_eq!(
                attr(xml, "autoFilter", "ref"),
                Some(format!("A4:J{}", 4 + data.len())),
                "{sheet}"
            );
            // Printable: landscape, one page wide, the header on every page.
            assert_eq!(
                attr(xml, "pageSetup", "orientation").as_deref(),
                Some("landscape")
            );
            assert_eq!(attr(xml, "pageSetup", "fitToHeight").as_deref(), Some("0"));
            assert!(xml.contains("<pageSetUpPr fitToPage=\"1\"/>"), "{sheet}");
            let escaped = sheet.replace('\'', "''");
            assert!(
                workbook.contains(&format!("'{escaped}'!$4:$4"))
                    || workbook.contains(&format!(">{sheet}!$4:$4<")),
                "{sheet}: header rows repeated when printed"
            );
            // Every column as wide as its content (Chinese double width), or wrapping.
            let widths = col_widths(xml);
            for (c, h) in HEADERS.iter().enumerate() {
                let need = std::iter::once(h.width())
                    .chain(data.iter().map(|r| match &r[c] {
                        Data::DateTime(_) if c == 7 => 10,
                        Data::DateTime(_) => 16,
                        other => cell_text(other).width(),
                    }))
                    .max()
                    .unwrap_or(0);
                let width = widths.get(&c).copied().unwrap_or(8.43);
                let wraps = matches!(c, 3 | 6);
                assert!(
                    width >= need as f64 || (wraps && width >= 40.0),
                    "{sheet}: column {h} is {width} wide for content {need} wide"
                );
            }
        }
    }
    assert!(saw_closed, "the tax-closed case is on AIC's list");

    // A bureau whose records the base has not taken in yet (its first load just ended,
    // the drain that takes it in not run) is trusted nowhere (`-infinity`): its workbook
    // says it is not complete yet, instead of the export failing.
    pg.batch_execute(
        "delete from core.base_complete where source in (select source from ebis.coverage where bureau = 'qts')",
    )
    .await
    .expect("base not complete for QTS");
    let trusted: String = pg
        .query_one(
            "select min(complete_at)::text from compare.completeness where bureau = 'qts'",
            &[],
        )
        .await
        .expect("completeness")
        .get(0);
    assert_eq!(trusted, "-infinity");
    // The analysts' view answers meanwhile, with QTS complete nowhere yet.
    let rows = pg
        .query(
            "select bureau, complete_at is null, lag_seconds is null from report.completeness",
            &[],
        )
        .await
        .expect("report.completeness while QTS is not in the base");
    assert!(rows.iter().any(|r| r.get::<_, String>(0) == "aic"));
    for r in &rows {
        let qts = r.get::<_, String>(0) == "qts";
        assert_eq!(
            (r.get(1), r.get(2)),
            (qts, qts),
            "{}",
            r.get::<_, String>(0)
        );
    }
    // Another QTS source, complete, covers one more division: QTS is still not complete
    // as a whole.
    pg.batch_execute(
        "insert into ebis.source_status (source, bureau, division, dialect, mode, state, complete_up_to)
         values ('qts_other', 'qts', '150304', 'mysql', 'changelog', 'streaming', now());
         insert into ebis.coverage (bureau, division, source) values ('qts', '150304', 'qts_other');
         insert into core.base_complete (source, complete_up_to, drained_at) values ('qts_other', now(), now())",
    )
    .await
    .expect("a complete QTS source");
    let qts = TempDir::new("ebis_worklists_qts");
    let files = ebis::compare::export_worklists(
        &city.wh,
        qts.path(),
        ExportOptions {
            format: ExportFormat::Xlsx,
            bureau: Some(Bureau::Qts),
            division: None,
            zone: ebis::zone::Zone::parse("+08:00").expect("zone"),
        },
    )
    .await
    .expect("export while a bureau is not complete");
    assert_eq!(files.len(), 1);
    let mut book: Xlsx<_> = open_workbook(&files[0].0).expect("open xlsx");
    let summary = book.worksheet_range("汇总").expect("summary");
    let qts_row: Vec<String> = summary
        .rows()
        .find(|r| r.iter().any(|c| cell_text(c) == "质监"))
        .expect("QTS's completeness row")
        .iter()
        .map(cell_text)
        .collect();
    assert!(
        qts_row
            .iter()
            .any(|c| c == "尚不完整（未接入或未完成首次同步）"),
        "{qts_row:?}"
    );

    // LibreOffice opens each workbook and prints it to PDF.
    let soffice = ["soffice", "libreoffice"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("LibreOffice (soffice) must be installed: scripts/services.sh installs it");
    let pdfs = TempDir::new("ebis_pdf");
    let profile = TempDir::new("ebis_lo_profile");
    let ran = std::process::Command::new(soffice)
        .arg(format!(
            "-env:UserInstallation=file://{}",
            profile.path().display()
        ))
        .args(["--headless", "--convert-to", "pdf", "--outdir"])
        .arg(pdfs.path())
        .args(files.iter().map(|(p, _)| p))
        .output()
        .expect("soffice runs");
    assert!(
        ran.status.success(),
        "soffice: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    for (path, _) in &files {
        let pdf = pdfs
            .path()
            .join(path.with_extension("pdf").file_name().expect("name"));
        let bytes = std::fs::read(&pdf).unwrap_or_else(|e| panic!("{}: {e}", pdf.display()));
        assert!(bytes.starts_with(b"%PDF"), "{}", pdf.display());
        // Page objects: `/Type/Page` (or with a space), not `/Type/Pages`.
        let pages = [&b"/Type/Page"[..], &b"/Type /Page"[..]]
            .iter()
            .map(|t| {
                bytes
                    .windows(t.len() + 1)
                    .filter(|w| w.starts_with(t) && w[t.len()] != b's')
                    .count()
            })
            .sum::<usize>();
        let sheets = open_workbook::<Xlsx<_>, _>(path)
            .expect("xlsx")
            .sheet_names()
            .len();
        assert!(
            pages >= sheets,
            "{}: {pages} page(s) for {sheets} sheet(s)",
            pdf.display()
        );
    }

    // CSV: a BOM, the rule first, identifiers kept as text.
    let csv = ebis::compare::export_worklists(
        &city.wh,
        out.path(),
        ExportOptions {
            format: ExportFormat::Csv,
            bureau: Some(Bureau::Ntax),
            division: None,
            zone: Default::default(),
        },
    )
    .await
    .expect("csv");
    let text = std::fs::read_to_string(&csv[0].0).expect("csv");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(
        lines.next(),
        Some(format!("\u{feff}规则,{}", HEADERS.join(",")).as_str())
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), csv[0].1);
    assert!(!body.is_empty());
    for line in &body {
        let reg = line
            .split(',')
            .nth(3)
            .expect("a registration number column");
        assert!(
            reg.is_empty() || (reg.starts_with("\"=\"\"") && reg.ends_with("\"\"\"")),
            "registration number kept as text: {reg}"
        );
    }
}

/// A login role granted only ebis_analyst, and its URL.
async fn analyst_login(city: &City) -> String {
    let pg = city.pg.client().await;
    let login = unique_name("ebis_t_analyst");
    pg.batch_execute(&format!(
        "create role {login} login password '{login}'; grant ebis_analyst to {login}"
    ))
    .await
    .expect("role");
    let (scheme, rest) = city.pg.url.split_once("://").expect("url");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{login}:{login}@{host}")
}

fn psql(url: &str, vars: &[(&str, &str)], sql: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    // On standard input, as a file would be: `-c` would not interpolate `:'id'`.
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("psql runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(sql.as_bytes()).expect("write sql");
    }
    child.wait_with_output().expect("psql ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analysts_select_star_from_a_documented_masked_schema_and_the_readme_queries_run() {
    let (city, cases) = city_with_every_rule().await;
    let pg = city.pg.client().await;
    let url = analyst_login(&city).await;

    // Every report view, `select *`, as the analyst.
    let views: Vec<String> = pg
        .query(
            "select viewname from pg_views where schemaname = 'report' order by 1",
            &[],
        )
        .await
        .expect("views")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(views.len() >= 8 + 15, "{views:?}");
    for v in &views {
        let ran = psql(&url, &[], &format!("select * from report.{v} limit 3"));
        assert!(
            ran.status.success(),
            "select * from report.{v}: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    let ran = psql(&url, &[], "select * from exchange.tax_registration limit 1");
    assert!(
        !ran.status.success(),
        "raw source rows stay out of an analyst's reach: exchange is column-granted, report is the way in"
    );

    // ID-card numbers come masked from the views, whole to the admin.
    let bad = &city.world.enterprises[cases[&Rule::InvalidIdentifier]];
    for (view, key) in [
        ("report.enterprise", "reg_no"),
        ("report.aic_establishment", "reg_no"),
    ] {
        let sql = format!(
            "select legal_rep_id_no from {view} where {key} = '{}'",
            bad.reg_no
        );
        let seen = String::from_utf8_lossy(&psql(&url, &[], &sql).stdout)
            .trim()
            .to_owned();
        assert!(seen.contains('*'), "{view}: {seen}");
        assert!(
            !seen.contains(&bad.aic_rep_id),
            "{view} shows the whole ID number"
        );
        let admin: Option<String> = pg.query_one(&sql, &[]).await.expect("admin reads").get(0);
        assert_eq!(admin.as_deref(), Some(bad.aic_rep_id.as_str()));
    }

    // Every column of every view an analyst reads is documented: Chinese, English gloss.
    let undocumented: Vec<String> = pg
        .query(
            "select n.nspname || '.' || c.relname || '.' || a.attname || ': ' || coalesce(col_description(c.oid, a.attnum), '(none)')
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
             where c.relkind = 'v'
               and (n.nspname = 'report'
                    or (n.nspname = 'compare' and c.relname in (select name from compare.rule))
                    or (n.nspname, c.relname) in (('compare', 'current'), ('compare', 'worklist'),
                                                  ('core', 'enterprise_view')))
               and not coalesce(col_description(c.oid, a.attnum) ~ '[一-龥].* \\([ -~]+\\)$', false)",
            &[],
        )
        .await
        .expect("comments")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:#?}");
    let described = psql(&url, &[], "\\d+ report.finding");
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.contains("不一致内容 (the discrepancy, in words)"),
        "{described}"
    );

    // One enterprise's records side by side, with what differs.
    let named = &city.world.enterprises[cases[&Rule::NameMismatch]];
    let differs: Vec<String> = pg
        .query_one(
            "select differs from report.enterprise_records where reg_no = $1",
            &[&named.reg_no],
        )
        .await
        .expect("side by side")
        .get(0);
    assert!(differs.contains(&"名称".to_owned()), "{differs:?}");
    let crosswalk: i64 = pg
        .query_one(
            "select count(*) from report.crosswalk where identifier = $1",
            &[&named.reg_no],
        )
        .await
        .expect("crosswalk")
        .get(0);
    assert!(
        crosswalk >= 2,
        "the registration number is held by AIC and more"
    );

    // The README's questions, as written there, through psql as the analyst.
    let readme = std::fs::read_to_string(crate::support::root().join("README.md")).expect("README");
    let section = readme
        .split("<!-- analyst-queries -->")
        .nth(1)
        .and_then(|s| s.split("<!-- /analyst-queries -->").next())
        .expect("the analyst queries section");
    let queries: Vec<&str> = section
        .split("```sql")
        .skip(1)
        .map(|b| b.split("```").next().expect("closed block").trim())
        .collect();
    assert_eq!(queries.len(), 10, "ten questions");
    for (n, q) in queries.iter().enumerate() {
        let ran = psql(&url, &[("id", &named.reg_no)], q);
        let out = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success(),
            "question {}: {}\n{q}",
            n + 1,
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(
            !out.trim().is_empty(),
            "question {} answers nothing on a city with every rule:\n{q}",
            n + 1
        );
    }
}
