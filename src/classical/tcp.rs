//! TCP as the link's wire: one connection per session, each wire frame a little-endian u32
//! length and the frame ([`super::link`]). Connecting retries with backoff until a deadline;
//! listening waits for one peer until a deadline; reads time out when the peer is silent.

use super::link::{MAX_WIRE_FRAME, WireRead, WireWrite};
use crate::error::TransportError;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The reading half of a connection.
pub struct TcpRead(TcpStream);
/// The writing half of a connection.
pub struct TcpWrite(TcpStream);

/// Split a connected stream into the link's wire halves (Nagle off: frames are small and
/// latency-bound).
pub fn wire(stream: TcpStream) -> std::io::Result<(TcpRead, TcpWrite)> {
    stream.set_nodelay(true)?;
    Ok((TcpRead(stream.try_clone()?), TcpWrite(stream)))
}

fn timeout_error(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl WireRead for TcpRead {
    fn read_frame(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
        self.0
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut len = [0u8; 4];
        // A clean end of the connection between frames is the end of the wire.
        match self.0.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if timeout_error(&e) => {
                return Err(TransportError::Timeout(format!(
                    "the peer sent nothing for {:.0} s",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let io = |e: std::io::Error| -> TransportError {
            if timeout_error(&e) {
                TransportError::Timeout("the peer stopped in the middle of a frame".into())
            } else {
                e.into()
            }
        };
        self.0.read_exact(&mut len[1..]).map_err(io)?;
        read_frame_body(&mut self.0, len)
            .map(Some)
            .map_err(|e| match e {
                TransportError::Io(e) => io(e),
                other => other,
            })
    }
    fn needs_graceful_close(&self) -> bool {
        true
    }
}

/// The rest of a wire frame whose 4-byte little-endian length was read: the length checked
/// against [`MAX_WIRE_FRAME`], the body read as it arrives (a corrupted length costs no
/// allocation beyond the bytes that really come).
pub fn read_frame_body<R: Read>(r: &mut R, len: [u8; 4]) -> Result<Vec<u8>, TransportError> {
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_WIRE_FRAME {
        return Err(TransportError::AuthenticationFailed(format!(
            "a wire frame announces {n} bytes (at most {MAX_WIRE_FRAME}): the stream is corrupted"
        )));
    }
    let mut buf = Vec::with_capacity(n.min(1 << 16));
    r.take(n as u64).read_to_end(&mut buf)?;
    if buf.len() < n {
        return Err(TransportError::Io(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("the wire ended inside a frame ({} of {n} bytes)", buf.len()),
        )));
    }
    Ok(buf)
}

/// Every wire frame of a byte stream, for the fuzz targets: frames until the end or the
/// first error.
pub fn frames_of(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut len = [0u8; 4];
    while bytes.read_exact(&mut len).is_ok() {
        match read_frame_body(&mut bytes, len) {
            Ok(f) => out.push(f),
            Err(_) => break,
        }
    }
    out
}

impl WireWrite for TcpWrite {
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        let mut b = Vec::with_capacity(4 + frame.len());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(frame);
        self.0.write_all(&b)?;
        Ok(())
    }
    fn shutdown(&mut self) {
        let _ = self.0.flush();
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

/// Resolve `addr` (host:port).
pub fn resolve(addr: &str) -> Result<Vec<SocketAddr>, TransportError> {
    let v: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| {
            TransportError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot resolve `{addr}`: {e}"),
            ))
        })?
        .collect();
    if v.is_empty() {
        return Err(TransportError::Io(std::io::Error::other(format!(
            "`{addr}` resolves to no address"
        ))));
    }
    Ok(v)
}

/// Connect to `addr`, retrying with exponential backoff (0.1 s doubling to 2 s) until
/// `deadline` has passed.
pub fn connect(addr: &str, deadline: Duration) -> Result<TcpStream, TransportError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut last = None;
        for a in resolve(addr)? {
            let left = deadline
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(50));
            match TcpStream::connect_timeout(&a, left.min(Duration::from_secs(5))) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        if start.elapsed() + backoff > deadline {
            return Err(TransportError::Timeout(format!(
                "could not reach the peer at {addr} in {attempts} attempts over {:.1} s ({})",
                start.elapsed().as_secs_f64(),
                last.map_or_else(|| "no address".into(), |e| e.to_string())
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A listening socket that accepts one peer at a time.
pub struct Listener(TcpListener);

impl Listener {
    /// Listen on `addr`.
    pub fn bind(addr: &str) -> Result<Listener, TransportError> {
        let l = TcpListener::bind(addr).map_err(|e| {
            TransportError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e}"),
            ))
        })?;
        l.set_nonblocking(true)?;
        Ok(Listener(l))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Wait for a peer until `deadline` has passed.
    pub fn accept(&self, deadline: Duration) -> Result<TcpStream, TransportError> {
        let start = Instant::now();
        loop {
            match self.0.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)?;
                    return Ok(s);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if start.elapsed() > deadline {
                        return Err(TransportError::Timeout(format!(
                            "no peer connected to {} within {:.0} s",
                            self.0
                                .local_addr()
                                .map_or_else(|_| "?".into(), |a| a.to_string()),
                            deadline.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
