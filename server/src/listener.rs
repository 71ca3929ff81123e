//! Accepting connections: a cap on open connections (in all and per client address) and a
//! deadline for each request's headers, so slow or idle clients cannot hold the server's
//! file descriptors (slowloris). Idle keep-alive connections are closed by poem's own
//! idle timeout, set in [`crate::serve`].
//!
//! The header deadline is enforced on the byte stream: from the first byte of an HTTP/1
//! request until the blank line that ends its headers, at most `header_read_timeout` may
//! pass; a connection that misses it is closed. Once the headers are complete the request
//! belongs to its handler, and after the response the next request starts the clock again.
//! HTTP/2 connections (prior knowledge) are left to the idle timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits the acceptor enforces.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Peers that are proxies: many clients share their address, so the per-address cap
    /// does not apply to them.
    pub trusted_proxies: Vec<IpNet>,
}

/// Open connections, in all and per peer address.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Wraps poem's TCP acceptor with the caps and the header deadline.
pub struct LimitedAcceptor {
    inner: TcpAcceptor,
    limits: Arc<ConnectionLimits>,
    open: Arc<Mutex<Open>>,
}

impl LimitedAcceptor {
    pub fn new(inner: TcpAcceptor, limits: ConnectionLimits) -> Self {
        Self { inner, limits: Arc::new(limits), open: Arc::default() }
    }

    /// Counts the connection in, or `None` when a cap is reached.
    fn admit(&self, peer: Option<IpAddr>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.limits.max_connections {
            return None;
        }
        let capped_peer = peer.filter(|ip| !self.limits.trusted_proxies.iter().any(|net| net.contains(ip)));
        if let Some(ip) = capped_peer {
            let count = open.per_ip.entry(ip).or_insert(0);
            if *count >= self.limits.max_connections_per_ip {
                return None;
            }
            *count += 1;
        }
        open.total += 1;
        Some(Slot { open: self.open.clone(), peer: capped_peer })
    }
}

impl Acceptor for LimitedAcceptor {
    type Io = GuardedStream<tokio::net::TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (stream, local, remote, scheme) = self.inner.accept().await?;
            let peer = remote.as_socket_addr().map(|a| a.ip());
            match self.admit(peer) {
                Some(slot) => {
                    let io = GuardedStream::new(stream, self.limits.header_read_timeout, slot);
                    return Ok((io, local, remote, scheme));
                }
                None => {
                    // Dropping the stream closes it at once; the client sees a reset.
                    tracing::warn!(peer = ?peer, "connection refused: too many open connections");
                    drop(stream);
                }
            }
        }
    }
}

/// One admitted connection; counted out when dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.peer
            && let Some(count) = open.per_ip.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&ip);
            }
        }
    }
}

/// Where a connection is in its request cycle, as seen from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (the idle timeout's business).
    BetweenRequests,
    /// Inside a request's headers; `matched` counts the bytes of `\r\n\r\n` seen so far.
    Headers { matched: u8 },
    /// Headers complete: the handler has the request until the response is written.
    Handling,
    /// HTTP/2 by prior knowledge: no per-request deadline at this level.
    Http2,
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A stream that fails its reads once a request's headers are overdue, which makes hyper
/// close the connection.
pub struct GuardedStream<S> {
    inner: S,
    phase: Phase,
    /// Bytes read before the phase was first decided (to spot the HTTP/2 preface).
    seen_at_start: usize,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl<S> GuardedStream<S> {
    fn new(inner: S, timeout: Duration, slot: Slot) -> Self {
        Self {
            inner,
            // A new connection owes its first request's headers within the deadline too.
            phase: Phase::Headers { matched: 0 },
            seen_at_start: 0,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            _slot: slot,
        }
    }

    /// Follows the request cycle through newly read bytes.
    fn observe(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.seen_at_start < HTTP2_PREFACE.len() {
                if byte == HTTP2_PREFACE[self.seen_at_start] {
                    self.seen_at_start += 1;
                    if self.seen_at_start == HTTP2_PREFACE.len() {
                        self.phase = Phase::Http2;
                        return;
                    }
                } else {
                    self.seen_at_start = usize::MAX;
                }
            }
            self.phase = match self.phase {
                Phase::Http2 => return,
                Phase::Handling => return,
                Phase::BetweenRequests => {
                    self.deadline.as_mut().reset(Instant::now() + self.timeout);
                    // A request may begin with stray CRLFs (RFC 9112 §2.2); they start nothing.
                    if byte == b'\r' || byte == b'\n' { Phase::BetweenRequests } else { Phase::Headers { matched: 0 } }
                }
                Phase::Headers { matched } => {
                    let expected = b"\r\n\r\n"[usize::from(matched)];
                    let matched = if byte == expected {
                        matched + 1
                    } else if byte == b'\r' {
                        1
                    } else {
                        0
                    };
                    if matched == 4 {
                        // The rest of this buffer is body (bounded elsewhere).
                        self.phase = Phase::Handling;
                        return;
                    }
                    Phase::Headers { matched }
                }
            };
        }
    }
}

fn overdue() -> io::Error {
    tracing::info!("closing a connection whose request headers are overdue");
    io::Error::new(io::ErrorKind::TimedOut, "request headers overdue")
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe(&buf.filled()[before..]);
                // A client trickling its headers a byte at a time is just as overdue.
                if matches!(this.phase, Phase::Headers { .. }) && Instant::now() >= this.deadline.deadline() {
                    return Poll::Ready(Err(overdue()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if matches!(this.phase, Phase::Headers { .. }) && this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(overdue()));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A response means the request is done; the next one starts its own clock.
        if this.phase == Phase::Handling {
            this.phase = Phase::BetweenRequests;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.phase == Phase::Handling {
            this.phase = Phase::BetweenRequests;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
