//! The loopback listener that receives the redirect: which addresses to bind. It is served by
//! [`crate::serve::Server`], whose connections cannot hold it up: a deadline for each request's
//! headers, a limit on connections, and unanswered connections dropped when the flow ends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;
use url::Url;

use super::error::AuthorizeError;

/// The addresses to listen on for a redirect URI of `http` to a loopback host with a port: the
/// IP literal's, or for `localhost` both 127.0.0.1 and [::1] (browsers may resolve it to either,
/// and whoever holds the other address would receive the code). None for any other URI.
pub(super) fn addresses(uri: &Url) -> Option<Vec<SocketAddr>> {
    if uri.scheme() != "http" {
        return None;
    }
    let port = uri.port()?;
    let ips = match uri.host()? {
        url::Host::Ipv4(ip) if ip.is_loopback() => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) if ip.is_loopback() => vec![IpAddr::V6(ip)],
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        }
        _ => return None,
    };
    Some(
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    )
}

/// Binds `addrs` (from [`addresses`]), all of them or none. The one exception: for `localhost`,
/// a machine without an IPv6 loopback cannot bind [::1], and 127.0.0.1 alone is then enough
/// (nobody else can bind [::1] there either).
pub(super) async fn bind(
    uri: &Url,
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, AuthorizeError> {
    let localhost = matches!(uri.host(), Some(url::Host::Domain(_)));
    let mut listeners = Vec::new();
    for &addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => listeners.push(listener),
            Err(e) if localhost && addr.is_ipv6() && no_ipv6_loopback(&e) => eprintln!(
                "(this machine has no IPv6 loopback; listening on 127.0.0.1:{} only)",
                addr.port()
            ),
            Err(source) => {
                return Err(AuthorizeError::Bind {
                    addr,
                    port: addr.port(),
                    redirect_uri: uri.to_string(),
                    source,
                });
            }
        }
    }
    Ok(listeners)
}

/// Whether binding failed because the machine has no IPv6 loopback address.
fn no_ipv6_loopback(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_loopback_redirects_are_listened_for_on_every_loopback_of_their_host() {
        let at = |s: &str| addresses(&Url::parse(s).unwrap());
        let addrs = |v: &[&str]| Some(v.iter().map(|a| a.parse().unwrap()).collect::<Vec<_>>());
        assert_eq!(
            at("http://localhost:8765/callback"),
            addrs(&["127.0.0.1:8765", "[::1]:8765"])
        );
        assert_eq!(
            at("http://LocalHost:8765/callback"),
            addrs(&["127.0.0.1:8765", "[::1]:8765"])
        );
        assert_eq!(at("http://127.0.0.1:9/cb"), addrs(&["127.0.0.1:9"]));
        assert_eq!(at("http://[::1]:9/cb"), addrs(&["[::1]:9"]));
        assert_eq!(at("https://example.com/cb"), None);
        assert_eq!(at("https://localhost:9/cb"), None);
        assert_eq!(at("http://example.com:9/cb"), None);
        assert_eq!(at("http://localhost/cb"), None);
    }

    #[test]
    fn only_a_missing_ipv6_loopback_excuses_a_failed_bind() {
        use std::io::{Error, ErrorKind};
        assert!(no_ipv6_loopback(&Error::from(ErrorKind::AddrNotAvailable)));
        assert!(no_ipv6_loopback(&Error::from_raw_os_error(
            libc::EAFNOSUPPORT
        )));
        assert!(!no_ipv6_loopback(&Error::from_raw_os_error(
            libc::EADDRINUSE
        )));
        assert!(!no_ipv6_loopback(&Error::from_raw_os_error(libc::EACCES)));
    }
}
