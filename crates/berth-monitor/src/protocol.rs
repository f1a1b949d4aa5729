//! The requests of the monitor socket (`m.sock`): one JSON line opens each connection.

use serde::{Deserialize, Serialize};

use crate::exit::ExitRecord;

/// The longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Start the created container.
    Start,
    /// Stream the selected output to this connection, and what it sends to the container's stdin.
    Attach {
        /// Send what the client writes to the container's stdin.
        stdin: bool,
        /// Send the container's stdout.
        stdout: bool,
        /// Send the container's stderr.
        stderr: bool,
    },
    /// Set the terminal's size.
    Resize {
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Answer with the exit record once the container has exited.
    Wait,
    /// Answer with the pid and the state.
    Status,
}

/// The request line as sent: a flat object (parsed as a plain struct rather than a tagged enum, which
/// keeps the monitor's code small).
#[derive(Deserialize)]
struct Line<'a> {
    op: &'a str,
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    stdout: bool,
    #[serde(default)]
    stderr: bool,
    height: Option<u16>,
    width: Option<u16>,
}

/// Parses a request line (without its newline).
pub fn parse(line: &[u8]) -> Result<Request, String> {
    let line: Line = serde_json::from_slice(line).map_err(|e| format!("invalid request: {e}"))?;
    Ok(match line.op {
        "start" => Request::Start,
        "wait" => Request::Wait,
        "status" => Request::Status,
        "attach" => Request::Attach {
            stdin: line.stdin,
            stdout: line.stdout,
            stderr: line.stderr,
        },
        "resize" => match (line.height, line.width) {
            (Some(height), Some(width)) => Request::Resize { height, width },
            _ => return Err("invalid request: resize needs height and width".to_string()),
        },
        other => return Err(format!("invalid request: unknown op {other:?}")),
    })
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    ok: bool,
    error: &'a str,
}

#[derive(Serialize)]
struct StatusReply<'a> {
    ok: bool,
    pid: i32,
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
}

#[derive(Serialize)]
struct WaitReply<'a> {
    ok: bool,
    exit_code: i32,
    oom_killed: bool,
    finished_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `{"ok":false,"error":...}` with its newline.
pub fn error_reply(message: &str) -> Vec<u8> {
    line(&ErrorReply {
        ok: false,
        error: message,
    })
}

/// `{"ok":true,"pid":N,"state":"created"|"running"|"exited"}` (with `exit_code` once exited).
pub fn status_reply(pid: i32, state: &str, exit_code: Option<i32>) -> Vec<u8> {
    line(&StatusReply {
        ok: true,
        pid,
        state,
        exit_code,
    })
}

/// `{"ok":true,"exit_code":N,"oom_killed":b,"finished_at":"..."}` (with `error` when it never ran).
pub fn wait_reply(record: &ExitRecord) -> Vec<u8> {
    line(&WaitReply {
        ok: true,
        exit_code: record.exit_code,
        oom_killed: record.oom_killed,
        finished_at: &record.finished_at,
        error: record.error.as_deref(),
    })
}

/// `{"ok":true}` with its newline.
pub fn ok_reply() -> Vec<u8> {
    b"{\"ok\":true}\n".to_vec()
}

/// `value` as one line.
pub fn line(value: &impl Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse(br#"{"op":"start"}"#).unwrap(), Request::Start);
        assert_eq!(
            parse(br#"{"op":"attach","stdin":true,"stdout":true}"#).unwrap(),
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        assert_eq!(
            parse(br#"{"op":"resize","height":40,"width":120}"#).unwrap(),
            Request::Resize {
                height: 40,
                width: 120
            }
        );
        assert_eq!(parse(br#"{"op":"wait"}"#).unwrap(), Request::Wait);
        assert_eq!(parse(br#"{"op":"status"}"#).unwrap(), Request::Status);
        assert!(
            parse(br#"{"op":"explode"}"#)
                .unwrap_err()
                .contains("unknown op \"explode\"")
        );
        assert!(
            parse(br#"{"op":"resize","height":4}"#)
                .unwrap_err()
                .contains("height and width")
        );
        assert!(parse(b"not json").unwrap_err().contains("invalid request"));
        assert!(parse(br#"{"op":"resize","height":-1,"width":1}"#).is_err());
    }

    #[test]
    fn replies_are_lines() {
        let reply: serde_json::Value = serde_json::from_slice(&error_reply("no \"tty\"")).unwrap();
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["error"], "no \"tty\"");
        assert!(ok_reply().ends_with(b"\n"));
        let status: serde_json::Value = serde_json::from_slice(&status_reply(7, "running", None)).unwrap();
        assert_eq!(
            status,
            serde_json::json!({"ok": true, "pid": 7, "state": "running"})
        );
        let status: serde_json::Value = serde_json::from_slice(&status_reply(7, "exited", Some(3))).unwrap();
        assert_eq!(status["exit_code"], 3);
        let record = ExitRecord {
            exit_code: -1,
            oom_killed: false,
            finished_at: "t".into(),
            error: Some("no".into()),
        };
        let wait: serde_json::Value = serde_json::from_slice(&wait_reply(&record)).unwrap();
        assert_eq!(
            wait,
            serde_json::json!({"ok": true, "exit_code": -1, "oom_killed": false, "finished_at": "t", "error": "no"})
        );
    }
}
