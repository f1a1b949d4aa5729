use super::*;

fn bindings(v: serde_json::Value) -> bollard_stubs::models::PortMap {
    serde_json::from_value(v).unwrap()
}

#[test]
fn port_bindings_become_requests() {
    let b = bindings(serde_json::json!({
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "90/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000-9002"}],
        "70/tcp": null
    }));
    let r = port_requests(Some(&b), &[], false).unwrap();
    assert_eq!(
        r,
        vec![
            PortRequest {
                udp: true,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_ports: None,
                container_port: 53
            },
            PortRequest {
                udp: false,
                host_ip: None,
                host_ports: None,
                container_port: 70
            },
            PortRequest {
                udp: false,
                host_ip: None,
                host_ports: Some((8080, 8080)),
                container_port: 80
            },
            PortRequest {
                udp: false,
                host_ip: None,
                host_ports: Some((9000, 9002)),
                container_port: 90
            },
        ]
    );
}

#[test]
fn publish_all_adds_the_exposed_ports_not_bound_yet() {
    let b = bindings(serde_json::json!({"80/tcp": [{"HostPort": "8080"}]}));
    let r = port_requests(
        Some(&b),
        &["80/tcp".into(), "443/tcp".into(), "53/udp".into()],
        true,
    )
    .unwrap();
    assert_eq!(r.len(), 3);
    assert!(
        r.iter()
            .any(|p| p.container_port == 443 && p.host_ports.is_none() && !p.udp)
    );
    assert!(r.iter().any(|p| p.container_port == 53 && p.udp));
    assert!(port_requests(None, &["80/tcp".into()], false).unwrap().is_empty());
}

#[test]
fn bad_port_bindings_are_refused_with_the_value() {
    for (v, needle) in [
        (serde_json::json!({"0/tcp": []}), "invalid containerPort: 0"),
        (serde_json::json!({"80/sctp": []}), "sctp"),
        (
            serde_json::json!({"80/tcp": [{"HostPort": "70000"}]}),
            "invalid hostPort: 70000",
        ),
        (
            serde_json::json!({"80/tcp": [{"HostPort": "9-3"}]}),
            "invalid hostPort: 9-3",
        ),
        (
            serde_json::json!({"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}),
            "::1",
        ),
    ] {
        let e = port_requests(Some(&bindings(v)), &[], false).unwrap_err();
        assert!(e.to_string().contains(needle), "{e} should name {needle}");
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    }
}

#[test]
fn networks_are_found_by_id_name_and_unique_prefix() {
    let mut nets = BTreeMap::new();
    for (id, name) in [("abc123", "one"), ("abd456", "two"), ("fff000", "abc")] {
        let mut r = predefined(name, "bridge");
        r.id = id.to_string();
        nets.insert(id.to_string(), r);
    }
    assert_eq!(find(&nets, "abd456").unwrap().name, "two");
    assert_eq!(
        find(&nets, "abc").unwrap().name,
        "abc",
        "a name wins over an id prefix"
    );
    assert_eq!(find(&nets, "abd").unwrap().name, "two");
    assert!(matches!(find(&nets, "ab"), Err(NetworkError::Invalid(_))));
    assert!(matches!(find(&nets, "zzz"), Err(NetworkError::NotFound(_))));
    assert!(matches!(find(&nets, ""), Err(NetworkError::NotFound(_))));
}

#[test]
fn network_names_follow_docker() {
    for ok in ["a", "my-net", "net_1.x"] {
        validate_name(ok).unwrap();
    }
    for bad in ["", "-x", "a b", "a/b", &"x".repeat(129)] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn host_veth_names_fit_an_interface_name_and_differ_per_network() {
    let c = "0123456789abcdef0123";
    let a = host_veth_name(c, "aaaaaaaaaa");
    let b = host_veth_name(c, "bbbbbbbbbb");
    assert!(a.len() <= 15 && b.len() <= 15);
    assert_ne!(a, b);
    berth_net::link::validate_name(&a).unwrap();
}

#[test]
fn a_taken_host_port_is_refused_and_a_free_one_reserved() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let req = PortRequest {
        udp: false,
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_ports: Some((port, port)),
        container_port: 80,
    };
    let e = reserve(&req, Ipv4Addr::new(10, 0, 0, 2)).unwrap_err();
    assert!(e.to_string().contains("port is already allocated"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let any = PortRequest {
        host_ports: None,
        ..req.clone()
    };
    let r = reserve(&any, Ipv4Addr::new(10, 0, 0, 2)).unwrap();
    assert_ne!(r.map.host_port, 0);
    // While it is held, nobody else can bind it.
    assert!(std::net::TcpListener::bind(("127.0.0.1", r.map.host_port)).is_err());
    let range = PortRequest {
        host_ports: Some((port, port.saturating_add(50))),
        ..req
    };
    let r2 = reserve(&range, Ipv4Addr::new(10, 0, 0, 2)).unwrap();
    assert_ne!(r2.map.host_port, port, "the taken port of a range is skipped");
}
