//! A WebSocket client that sends exactly the bytes a test gives it (broken frames,
//! half frames), for what a well-behaved client library cannot do.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// One frame as the server sent it.
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    /// Completes the upgrade of `path` on `port` (and reads past the welcome frame).
    pub fn connect(port: u16, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: switchboard.v1.json, mqtt\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(at) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&ws.buf[..at]).to_string();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                ws.buf.drain(..at + 4);
                return ws;
            }
            assert!(Instant::now() < end, "no upgrade answer");
            ws.fill(Duration::from_secs(1));
        }
    }

    /// The status line an upgrade of `path` with `headers` (each `Name: value\r\n`)
    /// gets, without completing anything else.
    pub fn upgrade_status(port: u16, path: &str, headers: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: switchboard.v1.json, mqtt\r\n{headers}\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = [0u8; 256];
        let n = stream.read(&mut head).unwrap_or(0);
        String::from_utf8_lossy(&head[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn fill(&mut self, within: Duration) -> bool {
        let _ = self
            .stream
            .set_read_timeout(Some(within.max(Duration::from_millis(1))));
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(_) => false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw ws write");
    }

    /// The next frame, or `None` at end of stream or after `within`.
    pub fn read_frame(&mut self, within: Duration) -> Option<ServerFrame> {
        let end = Instant::now() + within;
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let left = end.checked_duration_since(Instant::now())?;
            if !self.fill(left) {
                return None;
            }
        }
    }

    /// Reads until a close frame; its code, or `None` if the socket just ended.
    pub fn close_code(&mut self, within: Duration) -> Option<u16> {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let frame = self.read_frame(left)?;
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
        None
    }

    fn take_frame(&mut self) -> Option<ServerFrame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, start) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < start + len {
            return None;
        }
        let frame = ServerFrame {
            opcode: b[0] & 0x0f,
            payload: b[start..start + len].to_vec(),
        };
        self.buf.drain(..start + len);
        Some(frame)
    }
}

/// A client frame: `first` is FIN/RSV/opcode, the payload is masked unless `masked`
/// is false.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65_536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The header of a masked frame announcing `len` payload bytes (send part of a
/// payload after it for a half-sent frame).
pub fn header(first: u8, len: usize) -> Vec<u8> {
    let mut out = frame(first, &[], true);
    out.truncate(1);
    out.push(0x80 | 127);
    out.extend_from_slice(&(len as u64).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}
