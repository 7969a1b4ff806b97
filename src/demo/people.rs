//! Plausible 2006-era 乌海 data: people with valid ID-card numbers, enterprise names,
//! addresses, and the identifiers the bureaus issue (all with correct check digits).

use super::rng::Rng;
use crate::identifiers::{id_card_check, org_code_check, reg_no_check};
use chrono::NaiveDate;

/// The three districts.
pub const DISTRICTS: [(&str, &str); 3] = [
    ("150302", "海勃湾区"),
    ("150303", "海南区"),
    ("150304", "乌达区"),
];

const SURNAMES: &[&str] = &[
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "赵",
    "黄",
    "周",
    "吴",
    "徐",
    "孙",
    "胡",
    "朱",
    "高",
    "林",
    "何",
    "郭",
    "马",
    "罗",
    "梁",
    "宋",
    "郑",
    "谢",
    "韩",
    "唐",
    "冯",
    "于",
    "董",
    "萧",
    "程",
    "曹",
    "袁",
    "邓",
    "许",
    "傅",
    "沈",
    "曾",
    "彭",
    "吕",
    "苏",
    "卢",
    "蒋",
    "蔡",
    "贾",
    "丁",
    "魏",
    "薛",
    "叶",
    "阎",
    "乌云",
    "巴图",
    "其木格",
];
const GIVEN: &[&str] = &[
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "霞",
    "平",
    "刚",
    "桂英",
    "建华",
    "国强",
    "志刚",
    "海燕",
    "文斌",
    "晓东",
    "丽娟",
    "红梅",
    "镕",
    "堃",
    "喆",
    "昇",
    "犇",
    "珺",
    "玥",
    "赟",
    "彧",
    "宝山",
    "建国",
    "玉兰",
    "淑珍",
    "凤英",
    "永胜",
    "卫东",
    "利民",
    "金花",
    "巴特尔",
    "乌兰",
];
const BRANDS: &[&str] = &[
    "宏达",
    "金泰",
    "鑫源",
    "恒通",
    "昇华",
    "犇腾",
    "喆誉",
    "瑞丰",
    "蒙西",
    "黄河",
    "乌达",
    "海南",
    "甘德尔",
    "千里山",
    "新华",
    "滨河",
    "北方",
    "华源",
    "东方",
    "利达",
    "永盛",
    "兴旺",
    "天元",
    "泰和",
    "长城",
    "阳光",
    "鸿运",
    "金桥",
    "德隆",
    "宝丰",
    "联创",
    "福源",
    "祥和",
    "安泰",
    "正大",
    "同心",
    "金鹏",
    "神华",
    "乌海湖",
    "明珠",
];
const TRADES: &[(&str, char, &str)] = &[
    ("商贸", 'H', "6319"),
    ("煤焦", 'B', "0610"),
    ("化工", 'C', "2619"),
    ("建材", 'C', "3011"),
    ("运输", 'F', "5311"),
    ("餐饮", 'I', "6710"),
    ("物资", 'H', "6349"),
    ("机电", 'H', "6375"),
    ("电力", 'D', "4411"),
    ("建筑", 'E', "4700"),
    ("房地产开发", 'K', "7210"),
    ("信息技术", 'G', "6211"),
];
const FORMS: &[&str] = &[
    "有限公司",
    "有限责任公司",
    "股份有限公司",
    "（集团）有限公司",
    "商行",
    "经销部",
];
const ROADS: &[&str] = &[
    "新华大街",
    "人民路",
    "黄河东街",
    "滨河大道",
    "海拉路",
    "千里山北路",
    "甘德尔街",
    "林荫路",
    "团结路",
    "公园路",
    "青年路",
    "团结东路",
    "北环路",
    "乌兰布和街",
    "拉僧庙镇",
    "公乌素镇",
    "巴音陶亥镇",
    "乌兰淖尔镇",
    "五虎山路",
];

/// A person with a valid 18-digit ID-card number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Name.
    pub name: String,
    /// 身份证号.
    pub id_card: String,
}

/// A new person born 1945–1985 in one of the districts.
pub fn person(rng: &mut Rng) -> Person {
    let name = format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN));
    let district = rng.pick(&DISTRICTS).0;
    let birth = NaiveDate::from_ymd_opt(1945, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(rng.below(40 * 365))))
        .unwrap_or_default();
    let body = format!("{district}{}{:03}", birth.format("%Y%m%d"), rng.below(1000));
    let check = id_card_check(&body).unwrap_or('0');
    Person {
        name,
        id_card: format!("{body}{check}"),
    }
}

/// An enterprise name, its 门类 letter and 4-digit industry class.
pub fn enterprise_name(rng: &mut Rng, district: &str) -> (String, char, &'static str) {
    let place = match rng.below(5) {
        0 => "乌海市".to_owned(),
        1 => format!("乌海市{}", district_name(district)),
        2 => "内蒙古乌海".to_owned(),
        _ => "乌海市".to_owned(),
    };
    let brand = rng.pick(BRANDS);
    let (trade, letter, class) = *rng.pick(TRADES);
    let form = rng.pick(FORMS);
    (format!("{place}{brand}{trade}{form}"), letter, class)
}

/// A variant of a name that a bureau might hold by mistake (a wrong character).
pub fn misspelled(name: &str, rng: &mut Rng) -> String {
    let swaps = [
        ("宏达", "宏大"),
        ("鑫源", "鑫园"),
        ("恒通", "衡通"),
        ("有限责任公司", "有限公司"),
        ("商贸", "贸易"),
    ];
    for (a, b) in swaps {
        if name.contains(a) {
            return name.replacen(a, b, 1);
        }
    }
    format!(
        "{}{}",
        name.trim_end_matches("有限公司"),
        if rng.chance(0.5) {
            "实业有限公司"
        } else {
            "发展有限公司"
        }
    )
}

/// A street address in a district.
pub fn address(rng: &mut Rng, district: &str) -> String {
    format!(
        "内蒙古乌海市{}{}{}号",
        district_name(district),
        rng.pick(ROADS),
        1 + rng.below(300)
    )
}

/// The district's name.
pub fn district_name(code: &str) -> &'static str {
    DISTRICTS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
        .unwrap_or("")
}

/// A 15-digit registration number: registration authority + 8-digit serial + check.
pub fn reg_no(district: &str, serial: u64) -> String {
    let body = format!("{district}{serial:08}");
    let check = reg_no_check(&body).unwrap_or('0');
    format!("{body}{check}")
}

/// A 9-character org code from an 8-digit serial.
pub fn org_code(serial: u64) -> String {
    let body = format!("{:08}", serial % 100_000_000);
    let check = org_code_check(&body).unwrap_or('0');
    format!("{body}{check}")
}

/// Org code as printed: `XXXXXXXX-X`.
pub fn printed(code: &str) -> String {
    if code.len() == 9 {
        format!("{}-{}", &code[..8], &code[8..])
    } else {
        code.to_owned()
    }
}

/// Full-width brackets, digits and an ideographic space: the same text to a reader.
pub fn widened(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '(' => '（',
            ')' => '）',
            '0'..='9' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Half-width brackets.
pub fn narrowed(s: &str) -> String {
    s.replace('（', "(").replace('）', ")")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{is_id_card, is_org_code, is_reg_no};

    #[test]
    fn generated_identifiers_are_valid() {
        let mut rng = Rng::new(3);
        for i in 0..500 {
            let p = person(&mut rng);
            assert!(is_id_card(&p.id_card), "{}", p.id_card);
            assert!(is_reg_no(&reg_no("150303", i * 37)));
            assert!(is_org_code(&org_code(10_000_000 + i * 7919)));
        }
    }

    #[test]
    fn width_noise_is_reversible_by_normalization() {
        let s = "乌海市(海勃湾)宏达商贸有限公司1号";
        assert_eq!(crate::mapping::text::halfwidth(&widened(s)), s);
        assert_eq!(printed("769538264"), "76953826-4");
    }
}
