//! The admin API's HTTP/1.1 server: hyper on a current-thread tokio runtime owned by the admin
//! thread (never a shard's), serving many connections at once.
//!
//! Every limit is here, so one misbehaving client costs a bounded share and never delays others:
//!
//! - **Connections.** At most [`MAX_CONNECTIONS`] are served at once; past that the listener is
//!   not polled and new connections wait in the kernel's accept queue until a slot frees.
//! - **Deadline.** Each connection serves exactly one request (the response says
//!   `connection: close`, as scrapers and `curl` expect) and lives at most [`REQUEST_DEADLINE`]
//!   from accept: reading the head and the body, answering and writing the response all count.
//!   A client trickling its request a byte at a time is cut off then, whatever it still sends;
//!   since connections are tasks on one event loop, it never holds up anyone else meanwhile.
//! - **Size.** hyper refuses a head over [`MAX_HEAD`] bytes (431). The API takes no bodies, but a
//!   body is read and dropped up to [`MAX_BODY`] bytes; a longer one (declared or sent) is 413.
//! - **Token.** Checked before the body is read, so an unauthenticated client gets its 401 without
//!   sending anything more ([`super::api::Token`] compares it in constant time).
//!
//! Endpoints may block while the shards answer ([`Api::respond`]), so they run on the runtime's
//! blocking threads (at most [`BLOCKING_THREADS`]); the event loop only moves bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::api::{Api, Request, Response};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take from accept to the end of its response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Largest request line plus headers (hyper's read buffer; its minimum is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;

/// Largest request body read (and dropped).
pub const MAX_BODY: usize = 64 * 1024;

/// Threads that run endpoints (listing and kicking clients wait on the shards).
pub const BLOCKING_THREADS: usize = 4;

/// The admin server: a runtime and a listener registered with it, ready to serve.
pub struct Server {
    runtime: Runtime,
    listener: TcpListener,
}

impl Server {
    /// Builds the runtime and moves `listener` onto it. Fails before any thread starts, so
    /// start-up can report it.
    pub fn new(listener: std::net::TcpListener) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("admin-endpoint")
            .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)?
        };
        Ok(Server { runtime, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `api` forever on the calling thread.
    pub fn run(self, api: Api) {
        let Server { runtime, listener } = self;
        runtime.block_on(accept(listener, Arc::new(api)));
    }
}

/// Accepts connections while a slot is free, each served by a task of its own.
async fn accept(listener: TcpListener, api: Arc<Api>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // The semaphore is never closed, so this waits for a slot and never fails.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, Arc::clone(&api), slot));
            }
            Err(err) => {
                warn!(cause = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection's one request under [`REQUEST_DEADLINE`]; the slot frees on return.
async fn serve(stream: TcpStream, api: Arc<Api>, _slot: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let connection = http1::Builder::new()
        .keep_alive(false)
        // `Content-Type`, not `content-type`: header names as the API has always sent them,
        // for clients that match them byte for byte.
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| handle(Arc::clone(&api), request)),
        );
    match tokio::time::timeout(REQUEST_DEADLINE, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!(cause = %err, "admin connection failed"),
        Err(_) => debug!("admin request deadline passed; connection closed"),
    }
}

async fn handle(
    api: Arc<Api>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let mut request = Request::new(
        head.method.as_str(),
        head.uri
            .path_and_query()
            .map_or("/", |target| target.as_str()),
    );
    request.authorization = head
        .headers
        .get(AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec());
    if !api.authorized(&request) {
        return Ok(into_hyper(Response::error(
            401,
            "missing or wrong bearer token",
        )));
    }
    let declared = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Ok(into_hyper(Response::error(413, "request too large")));
    }
    if let Err(err) = Limited::new(body, MAX_BODY).collect().await {
        if err.downcast_ref::<LengthLimitError>().is_some() {
            return Ok(into_hyper(Response::error(413, "request too large")));
        }
        return Ok(into_hyper(Response::error(400, "request body not read")));
    }
    let response = tokio::task::spawn_blocking(move || api.respond(&request))
        .await
        .unwrap_or_else(|err| {
            warn!(cause = %err, "admin endpoint failed");
            Response::error(500, "internal error")
        });
    Ok(into_hyper(response))
}

/// hyper's form of a response; it adds `content-length` (and `connection: close`).
fn into_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut answer = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *answer.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = answer.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    if response.status == 401 {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    answer
}
