//! The events bus: every change the daemon makes is published here as docker's event JSON; `/events` streams it.
//!
//! Recent events are kept in a ring so that `since` can replay them, as dockerd does (it keeps the last 256).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::filters::{FilterError, Filters, glob_match};

/// How many past events `since` can replay.
const HISTORY: usize = 256;

/// The object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The object's id (an image id, a reference, a container id).
    #[serde(rename = "ID")]
    pub id: String,
    /// Attributes such as `name`.
    #[serde(rename = "Attributes")]
    pub attributes: HashMap<String, String>,
}

/// One event, serialised as dockerd does (including the pre-1.22 `status`/`id`/`from` fields that older clients
/// read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Legacy: the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Legacy: the actor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Legacy: the image of a container event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `image`, `container`, `daemon`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// `pull`, `tag`, `untag`, `delete`, `reload`, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// The object.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// An event stamped now.
    pub fn new(kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) -> Self {
        let nanos = crate::time::now_nanos();
        let legacy = matches!(kind, "image" | "container");
        Self {
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: None,
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            },
            scope: "local".to_string(),
            time: nanos.div_euclid(1_000_000_000),
            time_nano: nanos,
        }
    }
}

/// The filters `/events` accepts.
pub const EVENT_FILTERS: &[&str] = &[
    "type",
    "event",
    "image",
    "container",
    "label",
    "daemon",
    "network",
    "volume",
    "plugin",
    "scope",
];

/// An event filter, checked once when a subscription starts.
#[derive(Debug, Clone, Default)]
pub struct EventFilter(Filters);

impl EventFilter {
    /// Validates the keys.
    pub fn new(filters: Filters) -> Result<Self, FilterError> {
        filters.validate(EVENT_FILTERS)?;
        Ok(Self(filters))
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let f = &self.0;
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
            let vals = f.get(key);
            vals.is_empty() || vals.iter().any(|v| pred(v))
        };
        let name = e.actor.attributes.get("name").map(String::as_str).unwrap_or("");
        let image_attr = e.actor.attributes.get("image").map(String::as_str).unwrap_or("");
        any("type", &|v| v == e.kind)
            && any("event", &|v| {
                v == e.action || e.action.split(':').next() == Some(v)
            })
            && any("scope", &|v| v == e.scope)
            && (!f.contains("image")
                || e.kind == "image"
                    && any("image", &|v| {
                        image_matches(v, &e.actor.id) || image_matches(v, name)
                    })
                || e.kind == "container" && any("image", &|v| image_matches(v, image_attr)))
            && (!f.contains("container")
                || e.kind == "container" && any("container", &|v| v == name || e.actor.id.starts_with(v)))
            && (!f.contains("daemon")
                || e.kind == "daemon" && any("daemon", &|v| v == e.actor.id || v == name))
            && (!f.contains("network")
                || e.kind == "network" && any("network", &|v| v == e.actor.id || v == name))
            && (!f.contains("volume")
                || e.kind == "volume" && any("volume", &|v| v == e.actor.id || v == name))
            && (!f.contains("plugin")
                || e.kind == "plugin" && any("plugin", &|v| v == e.actor.id || v == name))
            && f.match_labels("label", &e.actor.attributes)
    }
}

/// `busybox` matches `busybox`, `busybox:latest`, `docker.io/library/busybox:latest`; ids match by prefix.
fn image_matches(filter: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    if filter == value || glob_match(filter, value) {
        return true;
    }
    let strip = |s: &str| -> String {
        let s = s.strip_prefix("docker.io/").unwrap_or(s);
        let s = s.strip_prefix("library/").unwrap_or(s);
        s.strip_suffix(":latest").unwrap_or(s).to_string()
    };
    let (f, v) = (strip(filter), strip(value));
    f == v
        || v.split_once(':').is_some_and(|(repo, _)| repo == f)
        || (value.starts_with("sha256:")
            && value
                .trim_start_matches("sha256:")
                .starts_with(filter.trim_start_matches("sha256:")))
}

/// Publishes events to subscribers and keeps the recent ones.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes `e`.
    pub fn publish(&self, e: Event) {
        tracing::debug!(kind = %e.kind, action = %e.action, id = %e.actor.id, "event");
        {
            let mut h = self
                .history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(e.clone());
        }
        // No subscriber is not an error.
        let _ = self.tx.send(e);
    }

    /// Subscribes, and returns the recorded events at or after `since_nanos` (when given) that were published
    /// before the subscription started; the receiver gets everything after.
    pub fn subscribe(&self, since_nanos: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = self.tx.subscribe();
        let past = match since_nanos {
            Some(since) => h.iter().filter(|e| e.time_nano >= since).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_type_event_and_image() {
        let e = Event::new("image", "pull", "busybox:latest", &[("name", "busybox")]);
        let f = |s: &str| EventFilter::new(Filters::parse(s).unwrap()).unwrap();
        assert!(f(r#"{"type":["image"]}"#).matches(&e));
        assert!(!f(r#"{"type":["container"]}"#).matches(&e));
        assert!(f(r#"{"event":["pull","tag"]}"#).matches(&e));
        assert!(f(r#"{"image":["busybox"]}"#).matches(&e));
        assert!(!f(r#"{"image":["debian"]}"#).matches(&e));
        assert!(f(r#"{"label":["name=busybox"]}"#).matches(&e));
        assert!(EventFilter::new(Filters::parse(r#"{"bogus":["x"]}"#).unwrap()).is_err());
    }

    #[tokio::test]
    async fn replays_since_and_streams() {
        let bus = EventBus::new();
        let first = Event::new("daemon", "reload", "id", &[]);
        let t = first.time_nano;
        bus.publish(first.clone());
        let (past, mut rx) = bus.subscribe(Some(t));
        assert_eq!(past, vec![first]);
        let second = Event::new("image", "tag", "sha256:x", &[("name", "a:b")]);
        bus.publish(second.clone());
        assert_eq!(rx.recv().await.unwrap(), second);
    }
}
