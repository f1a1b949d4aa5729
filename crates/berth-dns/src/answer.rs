//! Answers built from a scope's records, and the error answer sent when forwarding fails.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::records::{ScopeRecords, parse_reverse_v4};

/// Time to live of the records we answer with (docker's embedded DNS uses the same).
const TTL: u32 = 600;

/// The UDP payload size we advertise in an EDNS answer.
const EDNS_PAYLOAD: u16 = 1232;

/// Size limit of a UDP answer to a query without EDNS.
const CLASSIC_UDP_LIMIT: usize = 512;

/// The largest answer `request` accepts over UDP.
pub(crate) fn udp_limit(request: &Message) -> usize {
    match &request.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD)),
        None => CLASSIC_UDP_LIMIT,
    }
}

/// The lower-case text of a query name, labels joined by dots, without the trailing dot.
fn query_key(name: &Name) -> String {
    let mut key = String::new();
    for label in name.iter() {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&String::from_utf8_lossy(label));
    }
    key.make_ascii_lowercase();
    key
}

/// The single IN-class standard query of `request`, if it is one we may answer ourselves.
fn single_query(request: &Message) -> Option<&Query> {
    let meta = &request.metadata;
    if meta.message_type != MessageType::Query || meta.op_code != OpCode::Query || request.queries.len() != 1
    {
        return None;
    }
    let query = request.queries.first()?;
    (query.query_class() == DNSClass::IN).then_some(query)
}

/// A response skeleton for `request`: same id, opcode and question, RD/CD copied, EDNS when asked.
fn response_for(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.metadata.response_code = code;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// The answer to `request` from `records`, encoded and no longer than `limit` bytes (answers beyond it are
/// dropped and TC is set); `None` when the question is not about this scope and must be forwarded.
pub(crate) fn local_answer(request: &Message, records: &ScopeRecords, limit: usize) -> Option<Vec<u8>> {
    let query = single_query(request)?;
    let key = query_key(query.name());
    let mut response = response_for(request, ResponseCode::NoError);
    response.metadata.authoritative = true;
    if let Some(addrs) = records.addrs(&key) {
        if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
            let mut addrs = addrs.to_vec();
            fastrand::shuffle(&mut addrs);
            for addr in addrs {
                response.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::A(A(addr))));
            }
        }
    } else if query.query_type() == RecordType::PTR
        && let Some(addr) = parse_reverse_v4(&key)
        && let Some(target) = records.name_of(addr)
    {
        let target = Name::from_utf8(format!("{target}.")).ok()?;
        response.add_answer(Record::from_rdata(
            query.name().clone(),
            TTL,
            RData::PTR(PTR(target)),
        ));
    } else {
        return None;
    }
    encode_within(response, limit)
}

/// SERVFAIL for `request` (forwarding failed or no upstream is configured).
pub(crate) fn servfail(request: &Message) -> Option<Vec<u8>> {
    let response = response_for(request, ResponseCode::ServFail);
    match response.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::warn!(%error, "cannot encode a SERVFAIL answer");
            None
        }
    }
}

/// Encodes `response`, dropping trailing answers (and setting TC) until it fits in `limit` bytes.
fn encode_within(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    loop {
        let bytes = match response.to_vec() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "cannot encode a local DNS answer");
                return None;
            }
        };
        if bytes.len() <= limit || response.answers.is_empty() {
            return Some(bytes);
        }
        response.answers.pop();
        response.metadata.truncation = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;
    use crate::records::RecordStore;
    use std::net::Ipv4Addr;

    fn query(name: &str, rtype: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        message
    }

    fn store(count: u8) -> RecordStore {
        let store = RecordStore::default();
        let entries = (0..count)
            .map(|i| Entry {
                names: vec!["many".into()],
                addr: Ipv4Addr::new(10, 0, 1, i),
            })
            .collect();
        store.set("s", entries);
        store
    }

    #[test]
    fn large_answers_are_truncated_to_the_limit() {
        let store = store(100);
        let records = store.get("s").unwrap();
        let request = query("many.", RecordType::A);
        let bytes = local_answer(&request, &records, udp_limit(&request)).unwrap();
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        let response = Message::from_vec(&bytes).unwrap();
        assert!(response.metadata.truncation);
        assert!(!response.answers.is_empty() && response.answers.len() < 100);

        let full = Message::from_vec(&local_answer(&request, &records, 65535).unwrap()).unwrap();
        assert!(!full.metadata.truncation);
        assert_eq!(full.answers.len(), 100);
    }

    #[test]
    fn unknown_names_and_non_queries_are_not_answered() {
        let store = store(1);
        let records = store.get("s").unwrap();
        assert!(local_answer(&query("other.", RecordType::A), &records, 512).is_none());
        assert!(local_answer(&query("1.1.0.10.in-addr.arpa.", RecordType::PTR), &records, 512).is_none());
        let mut update = query("many.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        assert!(local_answer(&update, &records, 512).is_none());
        let mut response = query("many.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert!(local_answer(&response, &records, 512).is_none());
    }

    #[test]
    fn servfail_keeps_id_and_question() {
        let request = query("example.com.", RecordType::A);
        let response = Message::from_vec(&servfail(&request).unwrap()).unwrap();
        assert_eq!(response.metadata.id, request.metadata.id);
        assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(response.queries, request.queries);
    }
}
