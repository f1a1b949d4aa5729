//! Docker's JSON progress messages (`jsonmessage.JSONMessage`), streamed by pull, push, load and import.

use serde::{Deserialize, Serialize};

/// Progress of one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    /// Bytes in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// An error in a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The message.
    pub message: String,
}

/// One message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    /// `Downloading`, `Pull complete`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The layer (short id) or tag the message is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A rendered progress bar, for clients that print it as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Bytes done and total.
    #[serde(rename = "progressDetail", default, skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    /// Text output (load, build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// An error that ended the stream.
    #[serde(rename = "errorDetail", default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    /// The same error, for old clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Auxiliary data (push: tag, digest, size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl JsonMessage {
    /// A status line.
    pub fn status(status: impl Into<String>) -> Self {
        Self {
            status: Some(status.into()),
            ..Self::default()
        }
    }

    /// A status line about `id`.
    pub fn status_id(status: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            status: Some(status.into()),
            id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Progress of `id`, with a rendered bar like docker's.
    pub fn progress(status: impl Into<String>, id: impl Into<String>, current: i64, total: i64) -> Self {
        Self {
            status: Some(status.into()),
            id: Some(id.into()),
            progress: Some(render_bar(current, total)),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Self::default()
        }
    }

    /// Text output.
    pub fn stream(text: impl Into<String>) -> Self {
        Self {
            stream: Some(text.into()),
            ..Self::default()
        }
    }

    /// The error that ends a stream.
    pub fn error(message: impl Into<String>) -> Self {
        let m = message.into();
        Self {
            error_detail: Some(ErrorDetail { message: m.clone() }),
            error: Some(m),
            ..Self::default()
        }
    }

    /// One line of the stream (JSON and a newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        v
    }
}

/// Bytes in docker's units (`1.5MB`: base 1000, four significant digits, as Go's `units.HumanSize`).
pub fn human_size(n: i64) -> String {
    berth_image::units::human_size(n, 4)
}

/// `[=====>     ]  1.2MB/3.4MB`, as docker renders progress.
pub fn render_bar(current: i64, total: i64) -> String {
    if total <= 0 {
        return human_size(current);
    }
    let width = 50i64;
    let filled = (current.clamp(0, total) * width / total).clamp(0, width);
    let mut bar = "=".repeat(usize::try_from(filled).unwrap_or(0));
    if filled < width {
        bar.push('>');
    }
    format!("[{bar:<50}] {:>8}/{}", short_size(current), short_size(total))
}

fn short_size(n: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialise_like_docker() {
        let m = JsonMessage::progress("Downloading", "abc", 5, 10);
        let v: serde_json::Value = serde_json::from_slice(&m.to_line()).unwrap();
        assert_eq!(v["progressDetail"]["current"], 5);
        assert_eq!(v["id"], "abc");
        assert!(v.get("error").is_none());
        let e: serde_json::Value = serde_json::from_slice(&JsonMessage::error("boom").to_line()).unwrap();
        assert_eq!(e["errorDetail"]["message"], "boom");
        assert_eq!(render_bar(5, 10).len(), render_bar(10, 10).len());
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(999), "999B");
    }
}
