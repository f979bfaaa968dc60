//! The admin API's HTTP server against the real broker: a client trickling its request does not
//! hold up others and is cut off by the request deadline, many connections are served at once,
//! connections past the cap wait for a slot, request sizes are bounded, and the bearer token is
//! checked exactly.
//!
//! Deadlines here bound waits for something observable (an answer, a closed socket); the one
//! fixed wait is the slow client's pace, which is what the test is about.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, wait_until, Broker, WAIT};

/// The server's deadline from accept to response (`REQUEST_DEADLINE` in `src/admin/http.rs`).
const DEADLINE: Duration = Duration::from_secs(10);

/// Connections the server serves at once (`MAX_CONNECTIONS` in `src/admin/http.rs`).
const MAX_CONNECTIONS: usize = 64;

/// Reads a whole response (the server closes after it) within `timeout`; status and body.
fn read_response(stream: &mut TcpStream, timeout: Duration) -> (u16, String) {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("a whole response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    common::parse_response(&response)
}

/// Sends `request` as it is on a new connection; status and body.
fn raw(admin: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).expect("connect to admin");
    stream.write_all(request).unwrap();
    read_response(&mut stream, WAIT)
}

/// How the slow client's connection ended.
#[derive(Debug)]
struct Trickled {
    /// Bytes of the request sent before the server closed.
    sent: usize,
    /// Whether the server answered anything.
    answered: bool,
    /// Whether the whole request went out before the server closed.
    completed: bool,
    /// From the first byte to the close.
    after: Duration,
}

#[test]
fn a_trickling_client_does_not_hold_up_others_and_is_cut_off() {
    let broker = Broker::start(&[]);
    let admin = broker.admin();
    // At one byte per 200 ms this request would take over 20 s, twice the deadline.
    let request = format!(
        "GET /api/v1/stats HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(70)
    );
    let total = request.len();
    let sent = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&sent);
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(admin).expect("connect to admin");
        // The read's timeout paces the trickle; whatever it returns otherwise ends it.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        for (i, byte) in request.bytes().enumerate() {
            let ended = |answered| Trickled {
                sent: i,
                answered,
                completed: false,
                after: start.elapsed(),
            };
            if stream.write_all(&[byte]).is_err() {
                return ended(false);
            }
            progress.store(i + 1, Ordering::Release);
            match stream.read(&mut buf) {
                Ok(0) => return ended(false),
                Ok(_) => return ended(true),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return ended(false),
            }
        }
        Trickled {
            sent: total,
            answered: false,
            completed: true,
            after: start.elapsed(),
        }
    });
    wait_until("the slow client to start trickling", WAIT, || {
        sent.load(Ordering::Acquire) >= 3
    });

    let asked = Instant::now();
    let (status, body) = http(admin, "GET", "/api/v1/stats", None);
    let took = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"uptime_seconds\""), "{body}");
    assert!(
        took < Duration::from_secs(2),
        "a second client waited {took:?} behind the slow one"
    );
    assert!(
        !slow.is_finished() && sent.load(Ordering::Acquire) < total,
        "the slow client is still trickling while the other is answered"
    );

    let trickled = slow.join().expect("slow client");
    assert!(
        !trickled.completed && !trickled.answered && trickled.sent < total,
        "the deadline closes the slow connection unanswered: {trickled:?}"
    );
    assert!(
        trickled.after < DEADLINE + Duration::from_secs(5),
        "closed by the deadline: {trickled:?}"
    );
}

#[test]
fn twenty_connections_are_served_at_once() {
    let broker = Broker::start(&[]);
    let admin = broker.admin();
    let mut streams: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(admin).expect("connect to admin");
            stream
                .write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: test\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Every connection is mid-request; the last opened finishes first, so each is answered
    // while the ones opened before it still wait on their own request.
    for (n, stream) in streams.iter_mut().enumerate().rev() {
        stream.write_all(b"Connection: close\r\n\r\n").unwrap();
        let (status, body) = read_response(stream, WAIT);
        assert_eq!(status, 200, "connection {n}: {body}");
        assert!(
            body.contains("\"uptime_seconds\""),
            "connection {n}: {body}"
        );
    }
}

#[test]
fn connections_past_the_cap_wait_for_a_slot() {
    let broker = Broker::start(&[]);
    let admin = broker.admin();
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(admin).expect("connect to admin"))
        .collect();
    // Accepted in order: the first MAX_CONNECTIONS hold every slot, so this one waits.
    let mut waiting = TcpStream::connect(admin).expect("connect to admin");
    waiting
        .write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        early
            .as_ref()
            .is_err_and(|err| matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "no answer while every slot is taken: {early:?}"
    );
    // One idle connection leaves and its slot goes to the waiting one, well before the
    // deadline would free the others.
    drop(idle.pop());
    let (status, body) = read_response(&mut waiting, Duration::from_secs(5));
    assert_eq!(status, 200, "answered once a slot freed: {body}");
}

#[test]
fn request_sizes_are_bounded() {
    let broker = Broker::start(&[]);
    let admin = broker.admin();
    // A small body is read and ignored, as before.
    let (status, body) = raw(
        admin,
        b"DELETE /api/v1/clients/nobody HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(status, 404, "{body}");
    // A declared body over 64 KiB is refused before it is sent.
    let (status, body) = raw(
        admin,
        b"DELETE /api/v1/clients/x HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n",
    );
    assert_eq!(status, 413, "{body}");
    // So is a chunked one, once one byte more than 64 KiB has arrived (and been read, so the
    // server closes on a drained socket).
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            b"DELETE /api/v1/clients/x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
              10001\r\n",
        )
        .unwrap();
    stream.write_all(&[b'x'; 0x10001]).unwrap();
    let (status, body) = read_response(&mut stream, WAIT);
    assert_eq!(status, 413, "{body}");
    // Headers over 16 KiB are refused by the parser.
    let huge = format!(
        "GET /api/v1/stats HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "h".repeat(20 * 1024)
    );
    let (status, _) = raw(admin, huge.as_bytes());
    assert_eq!(status, 431);
    let (status, body) = raw(admin, b"NOT HTTP\r\n\r\n");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn only_the_exact_token_is_accepted() {
    let broker = Broker::start(&["--admin-token", "s3cret-token"]);
    let admin = broker.admin();
    for path in [
        "/metrics",
        "/api/v1/stats",
        "/api/v1/clients",
        "/api/v1/topics/hot",
    ] {
        for wrong in [
            None,
            Some(""),
            Some("s3cret-tokeN"),          // same length, last byte differs
            Some("x3cret-token"),          // same length, first byte differs
            Some("s3cret"),                // a prefix of the token
            Some("s3cret-token-and-more"), // the token as a prefix
            Some("other"),                 // another length altogether
        ] {
            let (status, body) = http(admin, "GET", path, wrong);
            assert_eq!(status, 401, "{path} with {wrong:?}: {body}");
            assert!(body.contains("bearer token"), "{body}");
        }
        let (status, body) = http(admin, "GET", path, Some("s3cret-token"));
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = http(admin, "DELETE", "/api/v1/clients/x", Some("s3cret"));
    assert_eq!(status, 401);
    let (status, _) = http(admin, "DELETE", "/api/v1/clients/x", Some("s3cret-token"));
    assert_eq!(status, 404);
    // The 401 names the scheme.
    let (status, _) = raw(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\nAuthorization: Basic czNjcmV0\r\n\r\n",
    );
    assert_eq!(status, 401);
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.read_to_string(&mut head).unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer\r\n"),
        "{head}"
    );
}
