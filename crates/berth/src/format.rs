//! Output: docker-style tables (tabwriter with minimum width 10 and padding 3), `--format` Go templates (gtmpl,
//! with docker's extra functions: json, join, table, upper, lower, title, split, truncate, pad), `--format json`,
//! human sizes and "2 hours ago".

use std::collections::HashMap;

use gtmpl::{Context, FuncError, Template};
use gtmpl_value::{Number, Value};

/// A template that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// It does not parse.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// It fails on the data.
    #[error("template: {0}")]
    Exec(String),
}

/// JSON → template value.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

/// Template value → JSON (for the `json` function).
pub fn from_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil | Value::NoValue | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => number_json(n),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(from_value).collect()),
        Value::Object(m) | Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect())
        }
    }
}

fn number_json(n: &Number) -> serde_json::Value {
    if let Some(i) = n.as_i64() {
        serde_json::Value::from(i)
    } else if let Some(u) = n.as_u64() {
        serde_json::Value::from(u)
    } else {
        serde_json::Value::from(n.as_f64().unwrap_or(0.0))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, f: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::Generic(format!("{f}: missing argument {}", i + 1)))
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = from_value(arg(args, 0, "json")?);
    Ok(Value::String(
        serde_json::to_string(&v).map_err(|e| FuncError::Generic(e.to_string()))?,
    ))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = text(arg(args, 1, "join")?);
    let items = match arg(args, 0, "join")? {
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>(),
        other => vec![text(other)],
    };
    Ok(Value::String(items.join(&sep)))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(arg(args, 0, "upper")?).to_uppercase()))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(arg(args, 0, "lower")?).to_lowercase()))
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "title")?);
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "split")?);
    let sep = text(arg(args, 1, "split")?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|x| Value::String(x.to_string()))
            .collect(),
    ))
}

fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "truncate")?);
    let n = match arg(args, 1, "truncate")? {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        other => text(other).parse().unwrap_or(0),
    };
    Ok(Value::String(
        s.chars().take(usize::try_from(n).unwrap_or(usize::MAX)).collect(),
    ))
}

fn f_pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "pad")?);
    let n = |i| match args.get(i) {
        Some(Value::Number(n)) => usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0),
        _ => 0,
    };
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(n(1)),
        " ".repeat(n(2))
    )))
}

/// A parsed `--format`.
pub struct Format {
    table: bool,
    json: bool,
    template: Option<Template>,
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Format")
            .field("table", &self.table)
            .field("json", &self.json)
            .finish()
    }
}

fn compile(src: &str) -> Result<Template, FormatError> {
    let mut t = Template::default();
    t.add_funcs(&[
        ("json", f_json as gtmpl_value::Func),
        ("join", f_join),
        ("upper", f_upper),
        ("lower", f_lower),
        ("title", f_title),
        ("split", f_split),
        ("truncate", f_truncate),
        ("pad", f_pad),
    ]);
    // Docker unescapes \t and \n in --format.
    let src = src.replace("\\t", "\t").replace("\\n", "\n");
    t.parse(src).map_err(|e| FormatError::Parse(e.to_string()))?;
    Ok(t)
}

impl Format {
    /// Parses `--format`: empty → `default_table` (a `table ...` template), `json`, `table TEMPLATE`, or a
    /// template.
    pub fn parse(spec: &str, default_table: &str) -> Result<Self, FormatError> {
        let spec = if spec.is_empty() { default_table } else { spec };
        if spec == "json" {
            return Ok(Self {
                table: false,
                json: true,
                template: None,
            });
        }
        let (table, body) = match spec.strip_prefix("table") {
            Some("") => (
                true,
                default_table.strip_prefix("table").unwrap_or("").trim_start(),
            ),
            Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
            _ => (false, spec),
        };
        Ok(Self {
            table,
            json: false,
            template: Some(compile(body)?),
        })
    }

    /// Renders one value (a JSON object).
    pub fn render(&self, v: &serde_json::Value) -> Result<String, FormatError> {
        if self.json {
            return serde_json::to_string(v).map_err(|e| FormatError::Exec(e.to_string()));
        }
        match &self.template {
            Some(t) => t
                .render(&Context::from(to_value(v)))
                .map_err(|e| FormatError::Exec(e.to_string())),
            None => Ok(String::new()),
        }
    }

    /// Renders rows: a header from `headers` (field → column title) when this is a table, then one line per
    /// row, aligned like docker's tabwriter.
    pub fn render_rows(
        &self,
        rows: &[serde_json::Value],
        headers: &HashMap<&str, &str>,
    ) -> Result<String, FormatError> {
        let mut lines = Vec::new();
        if self.table {
            let h: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::String((*v).to_string())))
                .collect();
            lines.push(self.render(&serde_json::Value::Object(h))?);
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        if self.table {
            return Ok(tabwrite(&lines));
        }
        let mut out = String::new();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        Ok(out)
    }
}

/// Aligns tab-separated cells: each column as wide as its widest cell plus 3, at least 10; the last cell of a
/// line is not padded.
pub fn tabwrite(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    align_cells(&rows, 10, true)
}

/// docker's tabwriter over rows of cells: each column as wide as its widest cell plus 3, at least `min`; the
/// last cell of a line is not padded, and with `trim` white space at the end of a line is cut.
pub fn align_cells<S: AsRef<str>>(rows: &[Vec<S>], min: usize, trim: bool) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.as_ref().chars().count() + 3).max(min);
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let c = c.as_ref();
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(if trim { line.trim_end() } else { &line });
        out.push('\n');
    }
    out
}

/// Bytes as docker prints them (`4.26MB`: base 1000, 3 significant digits).
pub fn human_size(n: i64) -> String {
    berth_image::units::human_size(n, 3)
}

/// "2 hours ago", as docker's `units.HumanDuration`.
pub fn human_ago(unix_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let s = (now - unix_secs).max(0);
    let d = if s < 1 {
        "Less than a second".to_string()
    } else if s == 1 {
        "1 second".to_string()
    } else if s < 60 {
        format!("{s} seconds")
    } else if s / 60 == 1 {
        "About a minute".to_string()
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else if (s as f64 / 3600.0).round() as i64 == 1 {
        "About an hour".to_string()
    } else if s < 48 * 3600 {
        format!("{} hours", (s as f64 / 3600.0).round() as i64)
    } else if s < 7 * 24 * 3600 * 2 {
        format!("{} days", s / 86_400)
    } else if s < 30 * 24 * 3600 * 3 {
        format!("{} weeks", s / (7 * 86_400))
    } else if s < 365 * 24 * 3600 * 2 {
        format!("{} months", s / (30 * 86_400))
    } else {
        format!("{} years", s / (365 * 86_400))
    };
    format!("{d} ago")
}

/// Unix seconds → `2024-01-02 03:04:05 +0000 UTC` (Go's default time format, as docker prints `CreatedAt`).
pub fn go_time(unix_secs: i64) -> String {
    jiff::Timestamp::from_second(unix_secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_else(|_| unix_secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_tables_and_units() {
        let f = Format::parse("{{.Repository}}:{{.Tag}}", "").unwrap();
        assert_eq!(
            f.render(&serde_json::json!({"Repository": "busybox", "Tag": "latest"}))
                .unwrap(),
            "busybox:latest"
        );
        let f = Format::parse("{{json .Config.Cmd}} {{join .Tags \",\"}} {{upper .A}}", "").unwrap();
        let v = serde_json::json!({"Config": {"Cmd": ["sh", "-c"]}, "Tags": ["a", "b"], "A": "x"});
        assert_eq!(f.render(&v).unwrap(), r#"["sh","-c"] a,b X"#);
        let f = Format::parse("", "table {{.A}}\t{{.B}}").unwrap();
        let h: HashMap<&str, &str> = [("A", "COL A"), ("B", "B")].into_iter().collect();
        let out = f
            .render_rows(&[serde_json::json!({"A": "1", "B": "2"})], &h)
            .unwrap();
        assert_eq!(out, "COL A     B\n1         2\n");
        assert!(Format::parse("{{.A", "").is_err());
        assert_eq!(
            Format::parse("json", "")
                .unwrap()
                .render(&serde_json::json!({"a": 1}))
                .unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(123_400_000), "123MB");
        assert_eq!(human_size(512), "512B");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
