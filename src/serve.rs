//! The HTTP server under every listener notion-inbox opens: `authorize`'s redirect listener, the
//! daemon's `/metrics` and the connect page. Anyone who can reach them may connect, so a
//! connection gets little: one request (no keep-alive), a deadline for its request line and
//! headers, another for its body (read whole, within a size, before the router sees the request),
//! a deadline for the whole connection, and one of a fixed number of places. When every place is
//! taken, a new connection either is closed as soon as it is accepted or, with
//! [`Limits::shed_idle`], takes the place of the oldest connection that has not finished sending
//! its request (idle or slow: a browser sends its request at once), which is closed. So however
//! many connections others open, the server holds at most [`Limits::max_connections`]
//! descriptors for them, and with shedding, holding places costs a stranger new connections
//! faster than real requests arrive.
//!
//! Hand-written around hyper rather than `axum::serve`, which sets no timer (so no header
//! deadline), serves any number of connections, and whose graceful shutdown waits for every
//! connection to close. Here, when the server stops, only connections whose request is being
//! answered get a short grace to receive their page; the others are dropped.
//!
//! The router sees the connecting address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What one connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a connection may take to send its request line and headers. A browser or a
    /// scraper sends them at once; a connection that dawdles (or sends nothing) is closed.
    pub header_timeout: Duration,
    /// How long, after its headers, a request may take to send its body.
    pub body_timeout: Duration,
    /// The largest body read; a larger one is answered 413.
    pub max_body: usize,
    /// How long a connection may last in all, its answer included; then it is closed.
    pub connection_timeout: Duration,
    /// How many connections are served at once (across all listeners of one server).
    pub max_connections: usize,
    /// Whether a connection arriving when every place is taken closes the oldest one still
    /// sending its request, instead of being closed itself.
    pub shed_idle: bool,
}

impl Default for Limits {
    /// 5 s for the headers and 5 s for the body (of at most 8 KiB), 60 s in all (above the
    /// Notion client's request timeout, which an answer of `authorize` may wait for), 32
    /// connections, no shedding.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            max_body: 8 * 1024,
            connection_timeout: Duration::from_secs(60),
            max_connections: 32,
            shed_idle: false,
        }
    }
}

/// How long, once the server stops, a request being answered may take to receive its answer.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// How long a new connection waits for the place of the connection it shed.
const SHED_WAIT: Duration = Duration::from_millis(200);

/// A running server: an accept loop per listener and a task per connection.
pub struct Server {
    /// Ends the accept loops, and the connections not being answered.
    stop: CancellationToken,
    /// Every accept loop and connection task, waited for by [`Server::shutdown`].
    tasks: TaskTracker,
}

impl Server {
    /// Serves `router` on `listeners` within `limits`.
    pub fn start(listeners: Vec<TcpListener>, router: axum::Router, limits: Limits) -> Server {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let places = Arc::new(Places {
            free: Arc::new(Semaphore::new(limits.max_connections)),
            held: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        });
        for listener in listeners {
            tasks.spawn(accept_loop(Accept {
                listener,
                router: router.clone(),
                limits,
                places: places.clone(),
                stop: stop.clone(),
                tasks: tasks.clone(),
            }));
        }
        Server { stop, tasks }
    }

    /// Stops listening (the ports are free when this returns), lets the requests being answered
    /// receive their answers (for at most [`ANSWER_GRACE`]) and drops every other connection.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The server's connection places, shared by its listeners.
struct Places {
    /// One permit per free place.
    free: Arc<Semaphore>,
    /// The connections holding a place, by the order they were accepted in.
    held: Mutex<BTreeMap<u64, Held>>,
    /// The next connection's number.
    next: AtomicU64,
}

/// What the accept loop knows of a connection holding a place.
struct Held {
    /// Claimed (set) once, either by the connection when its request was read whole (from then
    /// on it is never shed) or by the accept loop that sheds it.
    answering: Arc<AtomicBool>,
    /// Cancelled to shed it.
    shed: CancellationToken,
}

/// A place, given back (and forgotten by [`Places::held`]) when dropped.
struct Place {
    places: Arc<Places>,
    number: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.places.held).remove(&self.number);
    }
}

impl Places {
    /// A place for a new connection: a free one, or (when `shed`) the one of the oldest
    /// connection still sending its request. None when there is none.
    async fn take(
        self: &Arc<Places>,
        shed: bool,
    ) -> Option<(Place, Arc<AtomicBool>, CancellationToken)> {
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) if shed => {
                // Claimed with a compare-and-swap, as the connection claims its request when it
                // has read it: either it is shed or it is answered, never both.
                let claim = |h: &&Held| {
                    h.answering
                        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                };
                let oldest = lock(&self.held)
                    .values()
                    .find(claim)
                    .map(|h| h.shed.clone())?;
                oldest.cancel();
                tokio::time::timeout(SHED_WAIT, self.free.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
            Err(_) => return None,
        };
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let answering = Arc::new(AtomicBool::new(false));
        let shed = CancellationToken::new();
        lock(&self.held).insert(
            number,
            Held {
                answering: answering.clone(),
                shed: shed.clone(),
            },
        );
        let place = Place {
            places: self.clone(),
            number,
            _permit: permit,
        };
        Some((place, answering, shed))
    }
}

/// One accept loop's share of the server.
struct Accept {
    /// Where connections come from.
    listener: TcpListener,
    /// What answers their requests.
    router: axum::Router,
    /// What each connection may take.
    limits: Limits,
    /// The server's connection places, shared by its listeners.
    places: Arc<Places>,
    /// Ends the loop.
    stop: CancellationToken,
    /// Where connection tasks are spawned, so that shutdown waits for them.
    tasks: TaskTracker,
}

async fn accept_loop(a: Accept) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = a.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: the connections being served will free some.
                    tracing::debug!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = a.stop.cancelled() => return,
        };
        let Some((place, answering, shed)) = a.places.take(a.limits.shed_idle).await else {
            // Every place is taken (by connections being answered, when shedding): closed at
            // once, so it holds no descriptor.
            drop(stream);
            continue;
        };
        a.tasks.spawn(serve_connection(Connection {
            stream,
            peer,
            router: a.router.clone(),
            limits: a.limits,
            stop: a.stop.clone(),
            shed,
            answering,
            _place: place,
        }));
    }
}

/// One accepted connection and what it may take.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    limits: Limits,
    stop: CancellationToken,
    /// Cancelled when a newer connection takes its place.
    shed: CancellationToken,
    /// Set once its request was read whole.
    answering: Arc<AtomicBool>,
    /// Given back when the connection ends.
    _place: Place,
}

/// Serves one connection (one request: no keep-alive) until it ends, its time is up, it is shed
/// or the server stops.
async fn serve_connection(c: Connection) {
    let (router, limits, peer, seen) = (c.router, c.limits, c.peer, c.answering.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (router, seen) = (router.clone(), seen.clone());
        async move {
            let (mut parts, body) = req.into_parts();
            let body = axum::body::Body::new(body);
            let read = tokio::time::timeout(
                limits.body_timeout,
                axum::body::to_bytes(body, limits.max_body),
            );
            let bytes = match read.await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(_)) => return Ok(axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response()),
                Err(_) => return Ok(axum::http::StatusCode::REQUEST_TIMEOUT.into_response()),
            };
            if seen
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // Shed meanwhile: its place went to a newer connection.
                return Ok(axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response());
            }
            parts.extensions.insert(axum::extract::ConnectInfo(peer));
            let req = hyper::Request::from_parts(parts, axum::body::Body::from(bytes));
            router.oneshot(req).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(c.stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = tokio::time::sleep(limits.connection_timeout) => return,
        () = c.shed.cancelled() => return,
        () = c.stop.cancelled() => {}
    }
    if c.answering.load(Ordering::SeqCst) {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(ANSWER_GRACE, conn).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A generous deadline for what the tests wait on; it only guards against a hang.
    const DEADLINE: Duration = Duration::from_secs(30);

    fn limits(header_timeout: Duration, max_connections: usize) -> Limits {
        Limits {
            header_timeout,
            connection_timeout: Duration::from_secs(3600),
            max_connections,
            ..Limits::default()
        }
    }

    async fn start(limits: Limits) -> (Server, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/cb", axum::routing::get(|| async { "ok" }))
            .route("/never", axum::routing::get(std::future::pending::<()>));
        (Server::start(vec![listener], router, limits), addr)
    }

    /// Sends a GET of `path` on a new connection; returns the whole answer ("" if the server
    /// closed the connection without one).
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        let mut answer = String::new();
        if c.write_all(request.as_bytes()).await.is_ok() {
            let _ = c.read_to_string(&mut answer).await;
        }
        answer
    }

    /// Reads `c` to its end; panics if the server has not closed it within [`DEADLINE`].
    async fn closed_by_server(c: &mut TcpStream, what: &str) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, c.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{what} was never closed");
    }

    /// A connection that never finishes its headers is closed after the header timeout, and
    /// meanwhile another connection is served.
    #[tokio::test]
    async fn a_half_sent_request_is_closed_and_holds_up_nobody() {
        let (server, addr) = start(limits(Duration::from_millis(300), 32)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /cb?state=").await.unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let answer = get(addr, "/cb").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        closed_by_server(&mut slow, "the half-sent request").await;
        closed_by_server(&mut silent, "the connection that sent nothing").await;
        server.shutdown().await;
    }

    /// Shutting down does not wait for a connection that has not sent its request.
    #[tokio::test]
    async fn shutdown_drops_connections_that_sent_no_request() {
        let (server, addr) = start(limits(Duration::from_secs(3600), 32)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /cb?sta").await.unwrap();
        // Once this one is answered, the other connection was accepted too (same listener, earlier).
        let answer = get(addr, "/cb").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::timeout(DEADLINE, server.shutdown())
            .await
            .expect("shutdown waits for the half-sent request");
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    /// With every place taken, a new connection is closed unanswered at once (the header timeout
    /// is an hour); once a place is free, requests are served again.
    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once() {
        let (server, addr) = start(limits(Duration::from_secs(3600), 2)).await;
        let mut held: Vec<TcpStream> = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // Connections are accepted in turn and take their place as they are: this one finds none.
        let mut beyond = TcpStream::connect(addr).await.unwrap();
        closed_by_server(&mut beyond, "the connection beyond the limit").await;
        assert_eq!(get(addr, "/cb").await, "", "answered beyond the limit");
        drop(held.pop());
        let start = tokio::time::Instant::now();
        loop {
            let answer = get(addr, "/cb").await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "no place was given back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.shutdown().await;
    }

    /// A connection whose answer never comes is closed when its time is up.
    #[tokio::test]
    async fn a_connection_is_closed_when_its_time_is_up() {
        let (server, addr) = start(Limits {
            connection_timeout: Duration::from_millis(300),
            ..limits(Duration::from_secs(3600), 32)
        })
        .await;
        let answer = tokio::time::timeout(DEADLINE, get(addr, "/never"))
            .await
            .expect("the connection was never closed");
        assert_eq!(answer, "");
        server.shutdown().await;
    }
}
