//! Name resolution that works in static binaries: `localhost` without NSS, other names by `getaddrinfo`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// reqwest's resolver: `localhost` and `*.localhost` are the loopback addresses (RFC 6761), without asking
/// glibc, whose NSS modules a static binary may not be able to load; everything else goes to `getaddrinfo`
/// on tokio's blocking pool. (IP literals never reach a resolver.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: reqwest::dns::Addrs = Box::new(
                    vec![
                        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                    ]
                    .into_iter(),
                );
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}
