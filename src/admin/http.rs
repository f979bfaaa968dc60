//! Just enough HTTP/1.1 for the admin API: one request per connection, no body kept, every
//! response closes the connection.
//!
//! A hand-written parser keeps the dependency list short for an endpoint that serves a scraper
//! and a few operators; it bounds everything it reads ([`MAX_HEAD`], [`MAX_BODY`]), so a
//! misbehaving client costs at most one read timeout of the admin thread.

use std::io::{self, Read, Write};

/// Largest request line plus headers accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Largest request body read (and discarded); the API takes no bodies.
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed request.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Request {
    /// `GET`, `DELETE`...
    pub method: String,
    /// Path, percent-decoded segment by segment later ([`percent_decode`]); no query.
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A response.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// A JSON `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// An empty response.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }

    /// Writes the response.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed or timed out.
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
    /// Not HTTP/1.x or not well formed.
    #[error("malformed request")]
    Malformed,
    /// Headers or body over the bounds.
    #[error("request too large")]
    TooLarge,
}

/// Reads one request (head and any body, which is discarded).
pub fn read_request(stream: &mut impl Read) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(HttpError::TooLarge);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HttpError::Malformed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| HttpError::Malformed)?;
    let (request, content_length) = parse_head(head)?;
    if content_length > MAX_BODY {
        return Err(HttpError::TooLarge);
    }
    let mut remaining = content_length.saturating_sub(buf.len() - head_end - 4);
    while remaining > 0 {
        let n = stream.read(&mut chunk[..remaining.min(2048)])?;
        if n == 0 {
            break;
        }
        remaining -= n;
    }
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the request line and headers; returns the request and its `Content-Length`.
fn parse_head(head: &str) -> Result<(Request, usize), HttpError> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect();
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization: None,
    };
    let mut content_length = 0;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("authorization") {
            request.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| HttpError::Malformed)?;
        }
    }
    Ok((request, content_length))
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 are kept as they are (lossy).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push((hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line_query_and_headers() {
        let raw = b"GET /api/v1/clients?page=2&per_page=10&x=a%20b+c HTTP/1.1\r\nHost: x\r\n\
                    authorization: Bearer s3cret\r\n\r\n";
        let request = read_request(&mut &raw[..]).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/api/v1/clients");
        assert_eq!(request.param("page"), Some("2"));
        assert_eq!(request.param("x"), Some("a b c"));
        assert_eq!(request.authorization.as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn discards_a_body_and_refuses_garbage() {
        let raw = b"DELETE /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(read_request(&mut &raw[..]).unwrap().method, "DELETE");
        assert!(matches!(
            read_request(&mut &b"hello\r\n\r\n"[..]),
            Err(HttpError::Malformed)
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"[..]),
            Err(HttpError::Malformed)
        ));
        let huge = vec![b'a'; MAX_HEAD + 4096];
        assert!(matches!(
            read_request(&mut &huge[..]),
            Err(HttpError::TooLarge)
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"[..]),
            Err(HttpError::TooLarge)
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        Response::error(401, "token required")
            .write_to(&mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("WWW-Authenticate: Bearer\r\n"));
        assert!(text.ends_with("{\"error\":\"token required\"}"));
    }
}
