//! Helpers the command modules share: JSON field access, docker's short IDs, the error list of commands over
//! several objects, the confirmation prompt, inspect output, streamed bodies to a file or STDOUT, and the common
//! part of the prune commands.

use std::fmt::Display;
use std::io::Write as _;
use std::path::Path;

use http_body_util::BodyExt as _;
use hyper::Method;
use serde_json::Value;

use crate::client::{self, Client, ClientError};
use crate::format::{Format, human_size};
use crate::{CmdResult, Ctx, Failure};

/// The string at `k` of a JSON object, or "" when it is missing or not a string.
pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

/// An ID as docker shows it: without `sha256:` and cut to 12 characters, or whole with `no_trunc`.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// Every error on its own line, exit 1; nothing when all went well.
pub fn errors_result(errors: Vec<String>) -> CmdResult {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            message: errors.join("\n"),
            code: 1,
        })
    }
}

/// Runs `each` on every name in turn, printing the name when it went well and keeping the error when not; the
/// errors end the command as [`errors_result`] does.
pub async fn each_name<E: Display>(names: &[String], each: impl AsyncFn(&str) -> Result<(), E>) -> CmdResult {
    let mut errors = Vec::new();
    for n in names {
        match each(n).await {
            Ok(()) => println!("{n}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors_result(errors)
}

/// The usage error of `inspect --type` with a kind it does not know (exit 125).
pub fn invalid_type(kind: &str) -> Failure {
    Failure {
        message: format!("\"{kind}\" is not a valid value for --type"),
        code: 125,
    }
}

/// Asks `prompt [y/N]` on the terminal.
pub fn confirm(prompt: &str) -> bool {
    print!("{prompt} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Prints inspect results: a JSON array with docker's indent, or the template once per object.
pub fn print_inspect(out: &[Value], format: &str) -> CmdResult {
    if format.is_empty() {
        println!("{}", super::pretty(&Value::Array(out.to_vec())));
    } else {
        let f = Format::parse(format, "")?;
        for v in out {
            println!("{}", f.render(v)?);
        }
    }
    Ok(())
}

/// `POST /containers/{id}/start`.
pub async fn start_container(c: &Client, id: &str) -> Result<(), ClientError> {
    c.call(
        Method::POST,
        &format!("/containers/{id}/start"),
        &[],
        client::empty(),
    )
    .await
    .map(|_| ())
}

/// Writes a streamed response body (`save`, `export`) to `out`, whole to `.{name}.berth-{tmp_tag}` beside it and
/// then renamed into place (the temporary file is removed when anything fails), or to STDOUT without `out`.
/// `what` names the stream in errors.
pub async fn write_body(
    resp: hyper::Response<hyper::body::Incoming>,
    out: Option<&Path>,
    what: &str,
    tmp_tag: &str,
) -> CmdResult {
    let mut body = resp.into_body();
    match out {
        Some(p) => {
            let tmp = p.with_file_name(format!(
                ".{}.berth-{tmp_tag}",
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            let mut f =
                std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
            let r: CmdResult = async {
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("the {what} stream broke: {e}"))?;
                    if let Ok(d) = frame.into_data() {
                        f.write_all(&d)
                            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                    }
                }
                f.sync_all()
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
                Ok(())
            }
            .await;
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("the {what} stream broke: {e}"))?;
                if let Ok(d) = frame.into_data() {
                    stdout.write_all(&d)?;
                }
            }
            stdout.flush()?;
            Ok(())
        }
    }
}

/// What every prune command does once confirmed: `POST {path}?filters=…`, `report` prints what went, then the
/// space reclaimed unless `asked` (`system prune`, which asked already, sums the spaces and prints the total);
/// returns that space.
pub async fn prune(
    ctx: &Ctx,
    path: &str,
    filter: &[String],
    asked: bool,
    report: impl FnOnce(&Value),
) -> Result<i64, Failure> {
    let c = ctx.client().await?;
    let path = client::query(path, &[("filters", &super::filters_json(filter)?)]);
    let resp = c.call(Method::POST, &path, &[], client::empty()).await?;
    let v = client::body_json(resp).await?;
    report(&v);
    let space = v.get("SpaceReclaimed").and_then(Value::as_i64).unwrap_or(0);
    if !asked {
        println!("Total reclaimed space: {}", human_size(space));
    }
    Ok(space)
}

/// Prints the names in the array `v[key]` under `heading` (`Deleted Containers:`), then a blank line; nothing
/// when there are none.
pub fn print_deleted_names(v: &Value, key: &str, heading: &str) {
    let deleted: Vec<&str> = v
        .get(key)
        .and_then(|x| x.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        println!("{heading}");
        for d in deleted {
            println!("{d}");
        }
        println!();
    }
}
