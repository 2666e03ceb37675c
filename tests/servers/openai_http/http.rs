//! HTTP/1.1 as the local OpenAI-protocol server speaks it: requests read with keep-alive and a
//! `Content-Length` or chunked body, answers written whole or chunked, and `multipart/form-data`
//! bodies split into their parts.

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A parsed HTTP request.
pub(super) struct HttpRequest {
    pub(super) method: String,
    pub(super) path: String,
    /// Lower-case names.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl HttpRequest {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a handler left the connection.
pub(super) enum Next {
    KeepAlive,
    Close,
}

/// Reads one request; `None` at a clean end of the connection.
pub(super) async fn read_request(
    stream: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(std::io::Error::other(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    stream.read_line(&mut line).await?;
                    if line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            stream.read_exact(&mut request.body[start..]).await?;
            let mut crlf = [0u8; 2];
            stream.read_exact(&mut crlf).await?;
        }
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| std::io::Error::other("bad Content-Length"))?;
        request.body.resize(length, 0);
        stream.read_exact(&mut request.body).await?;
    }
    Ok(Some(request))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a whole answer with `Content-Length`.
pub(super) async fn respond(
    stream: &mut BufReader<TcpStream>,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Next> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    let stream = stream.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(Next::KeepAlive)
}

pub(super) async fn respond_json(
    stream: &mut BufReader<TcpStream>,
    status: u16,
    body: &Value,
) -> std::io::Result<Next> {
    respond(
        stream,
        status,
        "application/json",
        body.to_string().as_bytes(),
    )
    .await
}

/// Starts a chunked answer.
pub(super) async fn start_chunked(
    stream: &mut BufReader<TcpStream>,
    content_type: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.get_mut().write_all(head.as_bytes()).await
}

/// Writes one piece of a chunked answer; an empty piece ends it.
pub(super) async fn write_chunk(
    stream: &mut BufReader<TcpStream>,
    piece: &[u8],
) -> std::io::Result<()> {
    let stream = stream.get_mut();
    stream
        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
        .await?;
    stream.write_all(piece).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// One part of a multipart body.
pub(super) struct Part {
    pub(super) name: String,
    pub(super) file_name: Option<String>,
    pub(super) content_type: String,
    pub(super) data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (RFC 7578); `None` when it is not well formed.
pub(super) fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let find = |haystack: &[u8], from: usize, needle: &[u8]| {
        haystack[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, 0, delimiter.as_bytes())? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Some(parts); // the closing delimiter
        }
        pos += 2; // CRLF after the delimiter
        let headers_end = find(body, pos, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&body[pos..headers_end]).ok()?;
        let data_start = headers_end + 4;
        let next = find(body, data_start, format!("\r\n{delimiter}").as_bytes())?;
        let mut part = Part {
            name: String::new(),
            file_name: None,
            content_type: "text/plain".to_owned(),
            data: body[data_start..next].to_vec(),
        };
        for header in headers.split("\r\n") {
            let (name, value) = header.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for param in value.split(';').skip(1) {
                        let (key, v) = param.trim().split_once('=')?;
                        let v = v.trim_matches('"').to_owned();
                        match key {
                            "name" => part.name = v,
                            "filename" => part.file_name = Some(v),
                            _ => {}
                        }
                    }
                }
                "content-type" => part.content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        if part.name.is_empty() {
            return None;
        }
        parts.push(part);
        pos = next + 2 + delimiter.len();
    }
}
