//! Which client address a request comes from, for the per-address guest limit
//! ([`chat_core::ChatConfig::guests_per_minute`]).
//!
//! The peer of the TCP connection, from axum's [`ConnectInfo`] (which [`crate::serve`]
//! supplies, and `axum::serve` with `into_make_service_with_connect_info::<SocketAddr>()`).
//! When the peer is a proxy this host trusts ([`TrustedProxies`]: loopback, and whatever the
//! host adds), the client is the rightmost `X-Forwarded-For` entry that is not itself a
//! trusted proxy: what the nearest trusted proxy saw. Entries further left were written by
//! the client or by proxies nobody vouches for, so they are never read.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use axum::{extract::ConnectInfo, http::request::Parts};

/// The proxies whose `X-Forwarded-For` names the client: loopback always (a proxy on the
/// same host), and the networks a host adds (e.g. its load balancers' subnet).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or one address that is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an IP address or a network (`10.0.0.0/8`)")]
pub struct BadNetwork(String);

impl TrustedProxies {
    /// Loopback only (the default).
    pub fn loopback() -> Self {
        Self::default()
    }

    /// Loopback and the networks in `list`, comma-separated (`10.0.0.0/8, 192.168.1.7`).
    ///
    /// # Errors
    /// [`BadNetwork`] for an entry that is neither an address nor a network.
    pub fn parse(list: &str) -> Result<Self, BadNetwork> {
        let networks = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(network)
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether a peer at `address` is a proxy whose `X-Forwarded-For` is believed.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        address.is_loopback()
            || self
                .networks
                .iter()
                .any(|(net, bits)| within(address, *net, *bits))
    }
}

/// Where a request comes from, as far as the guest limit can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAddress {
    /// A client elsewhere.
    Remote(IpAddr),
    /// A process on this host, not forwarded by a proxy (a load generator, a health check):
    /// the host's own, not limited.
    Local,
    /// No peer address (served without [`ConnectInfo`]), or a trusted proxy that named no
    /// client: such requests share one limit.
    Unknown,
}

/// The client address of a request (see the module docs).
pub(crate) fn client_address(parts: &Parts, trusted: &TrustedProxies) -> ClientAddress {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        return ClientAddress::Unknown;
    };
    let peer = canonical(peer.ip());
    if !trusted.trusts(peer) {
        return ClientAddress::Remote(peer);
    }
    // Rightmost first: every header line in order, each line's entries in order, reversed.
    // Raw bytes: a line with a byte that is not visible ASCII is not skipped (a client's own
    // entry in it would hide the one the proxy appended), its entries are read one by one.
    let lines = parts.headers.get_all("x-forwarded-for");
    let forwarded = lines.iter().count() > 0;
    let entries: Vec<&[u8]> = lines
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    for entry in entries.iter().rev() {
        match std::str::from_utf8(entry).ok().and_then(parse_entry) {
            Some(address) if trusted.trusts(address) => continue,
            Some(address) => return ClientAddress::Remote(address),
            // Unreadable: the proxy chain cannot be followed past it.
            None => return ClientAddress::Unknown,
        }
    }
    if !forwarded && peer.is_loopback() {
        ClientAddress::Local
    } else {
        // A trusted proxy (or a chain of them) that named nobody else.
        ClientAddress::Unknown
    }
}

/// One `X-Forwarded-For` entry: an address, with a port or IPv6 brackets if a proxy added
/// them.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    IpAddr::from_str(entry)
        .ok()
        .or_else(|| SocketAddr::from_str(entry).ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| IpAddr::from_str(inner).ok())
        })
        .map(canonical)
}

/// An IPv4-mapped IPv6 address as the IPv4 one it is (a dual-stack listener reports them).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn network(entry: &str) -> Result<(IpAddr, u8), BadNetwork> {
    let bad = || BadNetwork(entry.to_owned());
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().map_err(|_| bad())?)),
        None => (entry, None),
    };
    let address = canonical(IpAddr::from_str(address).map_err(|_| bad())?);
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return Err(bad());
    }
    Ok((address, bits))
}

/// Whether `address` is in `net`/`bits` (same family only).
fn within(address: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, n, width) = match (address, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(peer: &str, forwarded: &[&str]) -> Parts {
        let mut request = Request::builder().uri("/guests");
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        if !peer.is_empty() {
            parts
                .extensions
                .insert(ConnectInfo(SocketAddr::from_str(peer).unwrap()));
        }
        parts
    }

    fn ip(s: &str) -> ClientAddress {
        ClientAddress::Remote(s.parse().unwrap())
    }

    #[test]
    fn a_remote_peer_is_the_client_whatever_it_forwards() {
        let loopback = TrustedProxies::loopback();
        let p = parts("203.0.113.7:5000", &["198.51.100.1"]);
        assert_eq!(client_address(&p, &loopback), ip("203.0.113.7"));
        let p = parts("[::ffff:203.0.113.7]:5000", &[]);
        assert_eq!(client_address(&p, &loopback), ip("203.0.113.7"));
        assert_eq!(
            client_address(&parts("", &[]), &loopback),
            ClientAddress::Unknown
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_entry() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // A local proxy: what it appended; a client's own forged entry on the left is ignored.
        let p = parts("127.0.0.1:1", &["6.6.6.6, 198.51.100.1"]);
        assert_eq!(client_address(&p, &trusted), ip("198.51.100.1"));
        // Through two trusted hops, on two header lines, with a port and brackets.
        let p = parts("10.1.2.3:1", &["6.6.6.6", "198.51.100.1:4711, 10.9.9.9"]);
        assert_eq!(client_address(&p, &trusted), ip("198.51.100.1"));
        let p = parts("192.168.1.7:1", &["[2001:db8::1]"]);
        assert_eq!(client_address(&p, &trusted), ip("2001:db8::1"));
        // A peer outside the trusted networks is not believed.
        let p = parts("192.168.1.8:1", &["198.51.100.1"]);
        assert_eq!(client_address(&p, &trusted), ip("192.168.1.8"));
        // Local and not forwarded: the host's own process.
        assert_eq!(
            client_address(&parts("127.0.0.1:1", &[]), &trusted),
            ClientAddress::Local
        );
        // A trusted proxy that names nobody, or garbage: one shared limit.
        assert_eq!(
            client_address(&parts("10.1.2.3:1", &[]), &trusted),
            ClientAddress::Unknown
        );
        assert_eq!(
            client_address(&parts("127.0.0.1:1", &["not-an-ip"]), &trusted),
            ClientAddress::Unknown
        );
        // A client's own entry with a byte that is not visible ASCII does not hide what the
        // proxy appended on the same line, nor make the request the host's own.
        let mut p = parts("127.0.0.1:1", &[]);
        p.headers.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff, 198.51.100.1").unwrap(),
        );
        assert_eq!(client_address(&p, &trusted), ip("198.51.100.1"));
        p.headers.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(client_address(&p, &trusted), ClientAddress::Unknown);
        assert_eq!(
            client_address(&parts("127.0.0.1:1", &[""]), &trusted),
            ClientAddress::Unknown
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted = TrustedProxies::parse("fd00::/8,172.16.0.0/12").unwrap();
        assert!(trusted.trusts("fd12::1".parse().unwrap()));
        assert!(trusted.trusts("172.31.255.255".parse().unwrap()));
        assert!(!trusted.trusts("172.32.0.0".parse().unwrap()));
        assert!(trusted.trusts("::1".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(TrustedProxies::parse("").unwrap().networks.is_empty());
    }
}
