//! Shows a stream of docker's JSON progress messages: on a terminal one progress bar per layer (indicatif), like
//! `docker pull`; otherwise one plain line per state change, without the byte counts.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{ClientError, JsonLines};

/// How the stream ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The `aux` values (push: tag, digest, size).
    pub aux: Vec<serde_json::Value>,
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty())
}

/// Reads the stream to its end; an `errorDetail` message ends it with [`ClientError::Daemon`]-like text.
pub async fn show(mut lines: JsonLines, quiet: bool) -> Result<Outcome, ClientError> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let mp = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    });
    let bar_style = ProgressStyle::with_template(
        "{prefix}: {msg:<12} [{bar:40.cyan/blue}] {decimal_bytes:>9}/{decimal_total_bytes}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let text_style =
        ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut last: HashMap<String, String> = HashMap::new();
    let mut out = Outcome::default();
    let mut stdout = std::io::stdout();
    while let Some(m) = lines.next().await? {
        if let Some(e) = m
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(|x| x.as_str())
            .or_else(|| field(&m, "error"))
        {
            for b in bars.values() {
                b.abandon();
            }
            return Err(ClientError::Daemon {
                status: hyper::StatusCode::OK,
                message: e.to_string(),
            });
        }
        if let Some(a) = m.get("aux") {
            out.aux.push(a.clone());
            continue;
        }
        if let Some(s) = field(&m, "stream") {
            if !quiet {
                let _ = mp.suspend(|| {
                    let _ = write!(stdout, "{s}");
                    stdout.flush()
                });
            }
            continue;
        }
        let status = field(&m, "status").unwrap_or("");
        let detail = m.get("progressDetail");
        let current = detail
            .and_then(|d| d.get("current"))
            .and_then(serde_json::Value::as_u64);
        let total = detail
            .and_then(|d| d.get("total"))
            .and_then(serde_json::Value::as_u64)
            .filter(|t| *t > 0);
        match field(&m, "id") {
            Some(id) if tty => {
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let b = mp.add(ProgressBar::new(0));
                    b.set_style(text_style.clone());
                    b.set_prefix(id.to_string());
                    b
                });
                match (current, total) {
                    (Some(c), Some(t)) => {
                        bar.set_style(bar_style.clone());
                        bar.set_length(t);
                        bar.set_position(c);
                    }
                    _ => bar.set_style(text_style.clone()),
                }
                bar.set_message(status.to_string());
            }
            Some(id) => {
                // Plain output: state changes only, no byte counts.
                if total.is_some() || quiet {
                    continue;
                }
                if last.get(id).map(String::as_str) != Some(status) {
                    last.insert(id.to_string(), status.to_string());
                    let _ = writeln!(stdout, "{id}: {status}");
                }
            }
            None => {
                if quiet || status.is_empty() {
                    continue;
                }
                if tty {
                    let _ = mp.println(status);
                } else {
                    let _ = writeln!(stdout, "{status}");
                }
            }
        }
    }
    for b in bars.values() {
        b.finish();
    }
    Ok(out)
}
