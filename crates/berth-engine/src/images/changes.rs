//! `docker import --change`: Dockerfile instructions that set the image's container config (`CMD`, `ENTRYPOINT`,
//! `ENV`, `EXPOSE`, `LABEL`, `ONBUILD`, `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`), as dockerd accepts them.

use serde_json::{Map, Value, json};

/// Applies `changes` to an empty config; `None` when there are none.
pub fn apply(changes: &[String]) -> Result<Option<Value>, String> {
    if changes.iter().all(|c| c.trim().is_empty()) {
        return Ok(None);
    }
    let mut c = Map::new();
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "CMD" => {
                c.insert("Cmd".into(), command(rest));
            }
            "ENTRYPOINT" => {
                c.insert("Entrypoint".into(), command(rest));
            }
            "ENV" => {
                let env = c.entry("Env").or_insert_with(|| json!([]));
                for (k, v) in pairs(rest, "ENV")? {
                    if let Some(a) = env.as_array_mut() {
                        a.retain(|e| {
                            e.as_str()
                                .and_then(|s| s.split_once('='))
                                .is_none_or(|(ek, _)| ek != k)
                        });
                        a.push(Value::String(format!("{k}={v}")));
                    }
                }
            }
            "LABEL" => {
                let labels = c.entry("Labels").or_insert_with(|| json!({}));
                for (k, v) in pairs(rest, "LABEL")? {
                    labels[k] = Value::String(v);
                }
            }
            "EXPOSE" => {
                let ports = c.entry("ExposedPorts").or_insert_with(|| json!({}));
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports[p] = json!({});
                }
            }
            "VOLUME" => {
                let vols = c.entry("Volumes").or_insert_with(|| json!({}));
                let list: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) => v,
                    Err(_) => rest.split_whitespace().map(str::to_string).collect(),
                };
                for v in list {
                    vols[v] = json!({});
                }
            }
            "USER" => {
                c.insert("User".into(), Value::String(rest.to_string()));
            }
            "WORKDIR" => {
                c.insert("WorkingDir".into(), Value::String(rest.to_string()));
            }
            "STOPSIGNAL" => {
                c.insert("StopSignal".into(), Value::String(rest.to_string()));
            }
            "ONBUILD" => {
                let ob = c.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(a) = ob.as_array_mut() {
                    a.push(Value::String(rest.to_string()));
                }
            }
            other => {
                return Err(format!(
                    "{other} is not a valid change command: use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR"
                ));
            }
        }
    }
    Ok(Some(Value::Object(c)))
}

/// JSON form (`["sh", "-c"]`) or shell form (`sh -c ...` → `["/bin/sh", "-c", "..."]`).
fn command(rest: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", rest]),
    }
}

/// `K=V K2="V 2"` or the legacy `K V`.
fn pairs(rest: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    if rest.is_empty() {
        return Err(format!("{what} needs at least one argument"));
    }
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut k = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            k.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            if k.trim().is_empty() {
                break;
            }
            return Err(format!("{what} {k:?} has no value: expected key=value"));
        }
        let mut v = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                v.push(c);
                chars.next();
            }
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_config() {
        assert_eq!(apply(&[]).unwrap(), None);
        let c = apply(&[
            r#"CMD ["sh"]"#.to_string(),
            "ENV A=1 B=\"two words\"".to_string(),
            "ENV A 3".to_string(),
            "LABEL x=y".to_string(),
            "EXPOSE 80 53/udp".to_string(),
            "WORKDIR /srv".to_string(),
            "ENTRYPOINT echo hi".to_string(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c["Cmd"], json!(["sh"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["Labels"]["x"], "y");
        assert!(c["ExposedPorts"].get("80/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some());
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert!(apply(&["RUN x".to_string()]).is_err());
        assert!(apply(&["ENV".to_string()]).is_err());
    }
}
