//! The name records of every scope (network) and their look-up.
//!
//! A scope's records are built once per `set_entries` into two small maps (name -> addresses, address ->
//! first name) and shared behind an `Arc`, so a query only takes a read lock long enough to clone that `Arc`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use crate::Entry;

/// The records of one scope.
#[derive(Debug, Default)]
pub(crate) struct ScopeRecords {
    /// Normalised name -> every address carrying that name, in entry order.
    by_name: HashMap<String, Vec<Ipv4Addr>>,
    /// Address -> the first name of the first entry with that address (as given, without trailing dot).
    by_addr: HashMap<Ipv4Addr, String>,
}

impl ScopeRecords {
    fn build(entries: Vec<Entry>) -> Self {
        let mut records = Self::default();
        for entry in entries {
            let mut first: Option<String> = None;
            for name in &entry.names {
                let Some(key) = normalise(name) else { continue };
                if first.is_none() {
                    first = Some(name.trim_end_matches('.').to_owned());
                }
                let addrs = records.by_name.entry(key).or_default();
                if !addrs.contains(&entry.addr) {
                    addrs.push(entry.addr);
                }
            }
            if let Some(first) = first {
                records.by_addr.entry(entry.addr).or_insert(first);
            }
        }
        records.by_name.shrink_to_fit();
        records.by_addr.shrink_to_fit();
        records
    }

    /// The addresses of a normalised name; `None` when the name is not in this scope.
    pub(crate) fn addrs(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// The first name of `addr`.
    pub(crate) fn name_of(&self, addr: Ipv4Addr) -> Option<&str> {
        self.by_addr.get(&addr).map(String::as_str)
    }
}

/// Lower-case, without a trailing dot; `None` for an empty name.
pub(crate) fn normalise(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// Every scope's records.
#[derive(Debug, Default)]
pub(crate) struct RecordStore {
    scopes: RwLock<HashMap<String, Arc<ScopeRecords>>>,
}

impl RecordStore {
    /// Replaces all records of `scope` (an empty list removes the scope).
    pub(crate) fn set(&self, scope: &str, entries: Vec<Entry>) {
        let records = Arc::new(ScopeRecords::build(entries));
        // A poisoned lock only means another thread panicked while swapping an `Arc`; the map is intact.
        let mut scopes = self.scopes.write().unwrap_or_else(|e| e.into_inner());
        if records.by_name.is_empty() {
            scopes.remove(scope);
        } else {
            scopes.insert(scope.to_owned(), records);
        }
    }

    /// The current records of `scope`.
    pub(crate) fn get(&self, scope: &str) -> Option<Arc<ScopeRecords>> {
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        scopes.get(scope).cloned()
    }
}

/// The IPv4 address named by a reverse name `d.c.b.a.in-addr.arpa` (normalised form), if it is one.
pub(crate) fn parse_reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.');
    let mut bytes = [0u8; 4];
    for slot in bytes.iter_mut().rev() {
        let part = parts.next()?;
        // Reject forms such as "+1" or "01" that `u8::from_str` or a lax reader might take.
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str], addr: [u8; 4]) -> Entry {
        Entry {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            addr: Ipv4Addr::from(addr),
        }
    }

    #[test]
    fn names_are_case_insensitive_and_shared_aliases_collect_all_addresses() {
        let store = RecordStore::default();
        store.set(
            "net1",
            vec![
                entry(&["Web", "web.mynet.", "alias"], [10, 0, 0, 2]),
                entry(&["db", "alias"], [10, 0, 0, 3]),
            ],
        );
        let scope = store.get("net1").unwrap();
        assert_eq!(scope.addrs("web"), Some(&[Ipv4Addr::new(10, 0, 0, 2)][..]));
        assert_eq!(scope.addrs("web.mynet"), Some(&[Ipv4Addr::new(10, 0, 0, 2)][..]));
        assert_eq!(
            scope.addrs("alias"),
            Some(&[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)][..])
        );
        assert_eq!(scope.addrs("nope"), None);
        assert_eq!(scope.name_of(Ipv4Addr::new(10, 0, 0, 2)), Some("Web"));
        assert_eq!(scope.name_of(Ipv4Addr::new(10, 0, 0, 9)), None);
        assert!(store.get("net2").is_none());
    }

    #[test]
    fn set_replaces_and_empty_removes() {
        let store = RecordStore::default();
        store.set("n", vec![entry(&["a"], [10, 0, 0, 2])]);
        store.set("n", vec![entry(&["b"], [10, 0, 0, 3])]);
        let scope = store.get("n").unwrap();
        assert_eq!(scope.addrs("a"), None);
        assert_eq!(scope.addrs("b"), Some(&[Ipv4Addr::new(10, 0, 0, 3)][..]));
        store.set("n", vec![]);
        assert!(store.get("n").is_none());
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            parse_reverse_v4("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(parse_reverse_v4("0.18.172.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("1.4.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("256.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("04.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("+4.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse_v4("web"), None);
    }
}
