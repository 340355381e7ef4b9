//! The client address of a request: the socket peer, unless the peer is a
//! trusted proxy (`trusted_proxies`), in which case the forwarding header
//! names it. `Forwarded` (RFC 7239) is read if present, else
//! `X-Forwarded-For`; the address taken is the rightmost one that is not a
//! trusted proxy itself, since everything left of it was written by the
//! client and proves nothing. A peer that is not trusted cannot make the
//! gateway believe any header: its own address counts.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The socket peer of a connection, put into every request's extensions
/// by the server loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// `10.0.0.0/8`, or a bare address (`10.1.2.3`, a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client address of a request from `peer` with headers `h`.
pub fn client(peer: IpAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let hops = if h.contains_key("forwarded") {
        forwarded_for(h)
    } else {
        x_forwarded_for(h)
    };
    // Right to left: the nearest hop first. A hop that cannot be read
    // ends the walk (what is left of it is not trustworthy).
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    canonical(client)
}

/// An IPv4-mapped IPv6 address as IPv4, so that one client is one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The addresses of every `X-Forwarded-For` header, in order; `None`
/// for an entry that is not an address.
fn x_forwarded_for(h: &HeaderMap) -> Vec<Option<IpAddr>> {
    h.get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .map(|s| parse_node(s.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `for=` nodes of every `Forwarded` header, in order.
fn forwarded_for(h: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in h.get_all("forwarded") {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            hops.push(node.and_then(|n| parse_node(n.trim_matches('"'))));
        }
    }
    hops
}

/// `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:443` or
/// `2001:db8::1`; an obfuscated node (`_hidden`, `unknown`) is `None`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("valid"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")]);
        assert_eq!(client(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
        let trusted = [parse_cidr("10.0.0.0/8").expect("cidr")];
        assert_eq!(client(ip("203.0.113.9"), &h, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_rightmost_untrusted_first() {
        let trusted = [
            parse_cidr("10.0.0.0/8").expect("cidr"),
            parse_cidr("192.168.1.1").expect("bare address"),
        ];
        // The client wrote 6.6.6.6 itself; 198.51.100.7 reached the first proxy.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(client(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client(ip("192.168.1.1"), &h, &trusted), ip("198.51.100.7"));
        // Forwarded wins over X-Forwarded-For; ports and brackets are read.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.2.2.2:80",
            ),
        ]);
        assert_eq!(client(ip("10.0.0.2"), &h, &trusted), ip("2001:db8::1"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            client(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        // An unreadable hop stops the walk at the last good one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, garbage, 10.1.1.1")]);
        assert_eq!(client(ip("10.0.0.2"), &h, &trusted), ip("10.1.1.1"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client(ip("10.0.0.2"), &h, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn mapped_addresses_are_ipv4_and_bad_cidrs_are_refused() {
        assert_eq!(
            client(ip("::ffff:1.2.3.4"), &HeaderMap::new(), &[]),
            ip("1.2.3.4")
        );
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("example.com").is_none());
        assert!(parse_cidr("::1/128").is_some());
    }
}
