//! Which scheme a registry is spoken to with: HTTPS with verified certificates, unless the registry is marked
//! insecure.
//!
//! As dockerd does, a registry is insecure when it is listed in `insecure-registries` (as `host`, `host:port` or a
//! CIDR such as `10.0.0.0/8`), or is `localhost` or an address in 127.0.0.0/8 or `::1`. An insecure registry is
//! tried with HTTPS without certificate verification first, then with plain HTTP. Host names are not resolved to
//! check them against CIDRs (dockerd does); list such hosts by name.

use std::net::IpAddr;

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTPS with certificate verification.
    Https,
    /// HTTPS without certificate verification (insecure registries only).
    HttpsUnverified,
    /// Plain HTTP (insecure registries only).
    Http,
}

impl Scheme {
    /// The URL scheme.
    pub fn url_scheme(self) -> &'static str {
        match self {
            Scheme::Https | Scheme::HttpsUnverified => "https",
            Scheme::Http => "http",
        }
    }
}

/// The insecure-registry policy.
#[derive(Debug, Clone, Default)]
pub struct InsecurePolicy {
    hosts: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl InsecurePolicy {
    /// From `insecure-registries` entries; entries that are neither a CIDR nor a host are kept as host names.
    pub fn new(entries: &[String]) -> Self {
        let mut policy = InsecurePolicy::default();
        for e in entries {
            let e = e.trim();
            let e = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e)
                .trim_end_matches('/');
            if let Some((addr, bits)) = e.split_once('/')
                && let (Ok(addr), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>())
                && bits <= if addr.is_ipv4() { 32 } else { 128 }
            {
                policy.nets.push((addr, bits));
                continue;
            }
            policy.hosts.push(e.to_ascii_lowercase());
        }
        policy
    }

    /// Whether `registry` (`host[:port]`) may be spoken to without verified TLS.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let host = host_of(&registry);
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if self.hosts.iter().any(|h| *h == registry || *h == host) {
            return true;
        }
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip.is_loopback() || self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits)),
            Err(_) => false,
        }
    }

    /// The schemes to try, in order.
    pub fn schemes(&self, registry: &str) -> &'static [Scheme] {
        if self.is_insecure(registry) {
            &[Scheme::HttpsUnverified, Scheme::Http]
        } else {
            &[Scheme::Https]
        }
    }
}

/// `host:port` → `host`; `[::1]:5000` → `[::1]`.
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(i) => &registry[..=i],
            None => registry,
        };
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a4| in_net(IpAddr::V4(a4), net, bits)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_unless_insecure() {
        let p = InsecurePolicy::new(&[
            "myreg.example:5000".to_string(),
            "10.1.0.0/16".to_string(),
            "http://plain.example/".to_string(),
            "fd00::/8".to_string(),
        ]);
        assert_eq!(p.schemes("registry.example.com"), &[Scheme::Https]);
        assert_eq!(p.schemes("docker.io"), &[Scheme::Https]);
        assert_eq!(p.schemes("192.168.1.1:5000"), &[Scheme::Https]);
        assert_eq!(
            p.schemes("myreg.example"),
            &[Scheme::Https],
            "another port than the listed one"
        );
        assert_eq!(p.schemes("10.2.0.1:5000"), &[Scheme::Https]);
        for insecure in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.9.10",
            "[::1]:5000",
            "myreg.example:5000",
            "10.1.200.3:443",
            "plain.example:8080",
            "[fd12::1]:5000",
        ] {
            assert!(p.is_insecure(insecure), "{insecure}");
            assert_eq!(
                p.schemes(insecure),
                &[Scheme::HttpsUnverified, Scheme::Http],
                "{insecure}"
            );
        }
        assert_eq!(Scheme::Https.url_scheme(), "https");
        assert_eq!(Scheme::Http.url_scheme(), "http");
        assert!(!InsecurePolicy::default().is_insecure("example.com:5000"));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("a.b:5000"), "a.b");
        assert_eq!(host_of("a.b"), "a.b");
        assert_eq!(host_of("[::1]:5000"), "[::1]");
    }
}
