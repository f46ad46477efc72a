//! The loopback listener that receives the redirect: which addresses to bind, and an accept loop
//! whose connections cannot hold it up.
//!
//! Hand-written around hyper rather than `axum::serve`, whose graceful shutdown waits for every
//! connection to close: one connection opened and left half-sent would keep `authorize` running
//! until `--timeout`. Here each connection has a deadline for its request line and headers, and
//! when the flow ends, only connections whose request is being answered get a short grace to
//! receive their page; the others are dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use url::Url;

use super::error::AuthorizeError;

/// How long a connection may take to send its request line and headers. A browser sends them at
/// once; a connection that dawdles is closed.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, once the flow ended, a request being answered may take to receive its page.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

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

/// The running listener: an accept loop per address and a task per connection.
pub(super) struct Server {
    /// Ends the accept loops, and the connections not being answered.
    stop: CancellationToken,
    /// Every accept loop and connection task, waited for by [`Server::shutdown`].
    tasks: TaskTracker,
}

impl Server {
    /// Serves `router` on `listeners`, giving each connection `header_timeout` for its request
    /// line and headers.
    pub fn start(
        listeners: Vec<TcpListener>,
        router: axum::Router,
        header_timeout: Duration,
    ) -> Server {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        for listener in listeners {
            tasks.spawn(accept_loop(
                listener,
                router.clone(),
                header_timeout,
                stop.clone(),
                tasks.clone(),
            ));
        }
        Server { stop, tasks }
    }

    /// Stops listening (the ports are free when this returns), lets the requests being answered
    /// receive their pages (for at most [`ANSWER_GRACE`]) and drops every other connection.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: the connections being served will free some.
                    tracing::debug!("the redirect listener cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        tasks.spawn(serve_connection(
            stream,
            router.clone(),
            header_timeout,
            stop.clone(),
        ));
    }
}

/// Serves one connection (one request: no keep-alive) until it ends or the flow ends.
async fn serve_connection(
    stream: TcpStream,
    router: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    // Set once the request line and headers were read and the request was handed to the router.
    let answering = Arc::new(AtomicBool::new(false));
    let seen = answering.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::SeqCst);
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop.cancelled() => {}
    }
    if answering.load(Ordering::SeqCst) {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(ANSWER_GRACE, conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    /// A connection that never finishes its headers is closed after the header timeout, and
    /// meanwhile another connection is served.
    #[tokio::test]
    async fn a_half_sent_request_is_closed_and_holds_up_nobody() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/cb", axum::routing::get(|| async { "ok" }));
        let server = Server::start(vec![listener], router, Duration::from_millis(300));
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /cb?state=").await.unwrap();
        let mut quick = TcpStream::connect(addr).await.unwrap();
        quick
            .write_all(b"GET /cb HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        quick.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The server closes the slow one (the deadline only guards against a hang).
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the half-sent request was never closed");
        server.shutdown().await;
    }

    /// Shutting down does not wait for a connection that has not sent its request.
    #[tokio::test]
    async fn shutdown_drops_connections_that_sent_no_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/cb", axum::routing::get(|| async { "ok" }));
        let server = Server::start(vec![listener], router, Duration::from_secs(3600));
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /cb?sta").await.unwrap();
        // Once this one is answered, the other connection was accepted too (same listener, earlier).
        let mut quick = TcpStream::connect(addr).await.unwrap();
        quick
            .write_all(b"GET /cb HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        quick.read_to_string(&mut answer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), server.shutdown())
            .await
            .expect("shutdown waits for the half-sent request");
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }
}
