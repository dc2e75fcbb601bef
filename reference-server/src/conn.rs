//! The connection layer: accepting, bounding and closing connections (`[LIM-8]` to `[LIM-10]`).
//!
//! Part of the HTTP edge (it knows hyper and sockets, nothing of the protocol). Every accepted
//! connection is registered with its state; one sweeper task closes connections that sit too
//! long between requests (idle keep-alive) or inside a request head (slowloris). At the bound on
//! open connections, a new connection first evicts the connection that has been idle longest;
//! only when every connection is busy is it answered `unavailable` (503) with `Retry-After`.
//!
//! Each connection's socket is wrapped in [`Tracked`], which
//! - notes when a request head starts arriving, so the sweeper can apply the header timeout;
//! - replaces hyper's automatic error responses (400 for a malformed head, 431, 414), which have
//!   an empty body, with problem+json (`[ERR-1]`);
//! - on drop, when the last request's body was not read (the answer came first: 413, 408, 401
//!   on an upload, ...), lingers: stops writing, keeps reading and discarding for a bounded time
//!   and byte count, then closes, so that the Client reads the answer instead of a reset
//!   (`[LIM-10]`).
//!
//! A request in progress (a long-poll included) is never closed by a timeout here: the body read
//! timeout and the long-poll bound are the handlers' (see `http`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The bounds of the connection layer. Durations are wall time; `Default` gives what a public
/// server would use.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Longest time from the first byte of a request head to its end (slowloris bound).
    pub header_read_timeout: Duration,
    /// Longest time a connection may sit with no request in progress (keep-alive idle bound).
    pub idle_timeout: Duration,
    /// Longest time to read one request body; a body trickled slower is answered 408.
    pub body_read_timeout: Duration,
    /// Most open connections; at the bound the longest-idle connection is closed, and when none
    /// is idle the new one is answered 503.
    pub connections_max: usize,
    /// Most long-poll pulls held at once; beyond it a long-poll is answered 503 at once.
    pub long_polls_max: usize,
    /// Largest request head (request line and headers), in bytes; beyond it: 431.
    pub header_bytes_max: usize,
    /// Longest lingering close (reading and discarding an unread body before closing).
    pub linger: Duration,
    /// Most bytes read and discarded by one lingering close.
    pub linger_bytes_max: u64,
    /// Failed authentications allowed from one source address in a burst (`[SEC-6]`).
    pub auth_failures_burst: u32,
    /// Failed authentications per minute that one source address earns back.
    pub auth_failures_per_min: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            connections_max: 10_000,
            long_polls_max: 5_000,
            header_bytes_max: 16 * 1024,
            linger: Duration::from_secs(5),
            linger_bytes_max: 16 * 1024 * 1024,
            auth_failures_burst: 30,
            auth_failures_per_min: 60,
        }
    }
}

/// Milliseconds since the registry's start; 0 means "not set".
type Tick = u64;

/// The state of one connection, shared by its socket wrapper, its request handler and the
/// sweeper.
#[derive(Debug)]
pub struct ConnState {
    /// Requests dispatched to the handler and not yet answered.
    in_flight: AtomicUsize,
    /// Responses the handler produced whose head hyper has not started to write yet.
    responses_due: AtomicUsize,
    /// When the connection last became idle (accepted, or its last answer produced).
    idle_since: AtomicU64,
    /// When the first byte of the current request head arrived (0: none is arriving).
    head_started: AtomicU64,
    /// The last request was answered before its body was read: linger before closing.
    linger: AtomicBool,
    /// Set with `close` notified: the sweeper or an eviction asks the connection to close.
    closing: AtomicBool,
    close: Notify,
    epoch: Instant,
}

impl ConnState {
    fn new(epoch: Instant) -> Self {
        let s = Self {
            in_flight: AtomicUsize::new(0),
            responses_due: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            linger: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            epoch,
        };
        s.idle_since.store(s.now(), Ordering::Relaxed);
        s
    }

    fn now(&self) -> Tick {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// Marks a request as dispatched to the handler; pair with [`ConnState::end_request`].
    pub fn begin_request(&self) {
        self.head_started.store(0, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request as answered (its response produced, about to be written).
    pub fn end_request(&self) {
        self.responses_due.fetch_add(1, Ordering::Relaxed);
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Asks for a lingering close: the answer went out before the request body was read.
    pub fn set_linger(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    /// Completes when the registry asks this connection to close.
    pub async fn close_requested(&self) {
        self.close.notified().await
    }

    /// Whether a request is in progress.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn request_close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    /// When this idle connection has to close, or `None` while a request is in progress.
    fn deadline(&self, cfg: &EdgeConfig) -> Option<Tick> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        Some(if head != 0 {
            head + cfg.header_read_timeout.as_millis() as u64
        } else {
            self.idle_since.load(Ordering::Relaxed) + cfg.idle_timeout.as_millis() as u64
        })
    }
}

/// What a request handler learns about its connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The source address of the connection.
    pub peer: IpAddr,
    /// The connection's shared state.
    pub state: Arc<ConnState>,
}

impl ConnInfo {
    /// Information for a request that did not come through [`Registry`] (in-process callers).
    pub fn detached() -> Self {
        Self {
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            state: Arc::new(ConnState::new(Instant::now())),
        }
    }
}

/// Counts of what the connection layer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections closed because their request head arrived too slowly.
    pub header_timeouts: AtomicU64,
    /// Connections closed because they were idle too long.
    pub idle_timeouts: AtomicU64,
    /// Idle connections closed to admit a new one at the bound.
    pub evicted: AtomicU64,
    /// New connections answered 503 because every connection was busy.
    pub refused: AtomicU64,
}

/// Every open connection, the sweeper's view of them, and the server's shutdown signal.
pub struct Registry {
    cfg: EdgeConfig,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Sockets being closed by a lingering close or a refusal; bounded by `lingering_max`.
    lingering: Arc<AtomicUsize>,
    shutting_down: AtomicBool,
    closed_since_trim: AtomicU64,
    changed: Notify,
    /// What the layer did.
    pub counters: ConnCounters,
}

/// Closed connections after which the sweeper hands freed memory back to the OS.
pub const TRIM_AFTER_CLOSED: u64 = 1024;

/// Most sockets in a lingering close or a 503 refusal at once; beyond it they close at once.
const LINGERING_MAX: usize = 1024;

/// How a new connection is admitted.
pub enum Admission {
    /// Serve it; it is registered under this ID.
    Serve(u64, Arc<ConnState>),
    /// Every connection is busy: answer 503 and close.
    Refuse,
}

impl Registry {
    /// An empty registry with these bounds.
    pub fn new(cfg: EdgeConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            lingering: Arc::new(AtomicUsize::new(0)),
            shutting_down: AtomicBool::new(false),
            closed_since_trim: AtomicU64::new(0),
            changed: Notify::new(),
            counters: ConnCounters::default(),
        })
    }

    /// The bounds.
    pub fn config(&self) -> &EdgeConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.lock().len()
    }

    /// Registers a new connection, evicting the longest-idle one at the bound.
    pub fn admit(&self) -> Admission {
        let mut conns = self.lock();
        if conns.len() >= self.cfg.connections_max {
            let oldest = conns
                .iter()
                .filter(|(_, c)| {
                    c.in_flight.load(Ordering::Relaxed) == 0 && !c.closing.load(Ordering::Relaxed)
                })
                // Longest idle first; among equals, the earliest accepted.
                .min_by_key(|(id, c)| {
                    let head = c.head_started.load(Ordering::Relaxed);
                    let since = if head != 0 {
                        head
                    } else {
                        c.idle_since.load(Ordering::Relaxed)
                    };
                    (since, **id)
                })
                .map(|(id, c)| (*id, c.clone()));
            match oldest {
                Some((id, c)) => {
                    // It no longer counts: its task closes it at once.
                    conns.remove(&id);
                    c.request_close();
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return Admission::Refuse;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(self.epoch));
        conns.insert(id, state.clone());
        Admission::Serve(id, state)
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.closed_since_trim.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Hands memory freed by closed connections back to the OS once at least
    /// [`TRIM_AFTER_CLOSED`] connections closed since the last time; returns whether it did.
    /// Without it glibc keeps the freed buffers of a burst of connections (20,000 idle
    /// connections left RSS at 11x its at-rest size after they closed).
    pub fn trim_memory(&self) -> bool {
        if self.closed_since_trim.load(Ordering::Relaxed) < TRIM_AFTER_CLOSED {
            return false;
        }
        self.closed_since_trim.store(0, Ordering::Relaxed);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas; it takes
        // no pointer and is safe to call at any time from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
        true
    }

    /// Closes every idle connection whose timeout has passed; returns how many.
    pub fn sweep(&self) -> usize {
        let conns = self.lock();
        let mut closed = 0;
        for c in conns.values() {
            if c.closing.load(Ordering::Relaxed) {
                continue;
            }
            let now = c.now();
            if let Some(deadline) = c.deadline(&self.cfg) {
                if now >= deadline {
                    let counter = if c.head_started.load(Ordering::Relaxed) != 0 {
                        &self.counters.header_timeouts
                    } else {
                        &self.counters.idle_timeouts
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    c.request_close();
                    closed += 1;
                }
            }
        }
        closed
    }

    /// How often the sweeper runs: a quarter of the shortest timeout, from 10 ms to 1 s.
    pub fn sweep_every(&self) -> Duration {
        (self.cfg.header_read_timeout.min(self.cfg.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Asks every connection to finish its request in progress and close.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for c in self.lock().values() {
            c.request_close();
        }
    }

    /// Waits until no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.changed.notified();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Wraps an accepted socket for serving. `render` writes a complete problem+json response
    /// (status line, headers, body, `Connection: close`) for an HTTP status.
    pub fn track<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        io: S,
        state: Arc<ConnState>,
        render: Arc<dyn Fn(u16) -> Vec<u8> + Send + Sync>,
    ) -> Tracked<S> {
        Tracked {
            io: Some(io),
            state,
            render,
            replacing: None,
            lingering: self.lingering.clone(),
            linger: self.cfg.linger,
            linger_bytes_max: self.cfg.linger_bytes_max,
        }
    }

    /// Answers a connection that cannot be served (every connection busy) with `response`, then
    /// closes it with a lingering close, in a task of its own; closes it at once when too many
    /// sockets are already being closed this way.
    pub fn refuse<S>(&self, io: S, response: Vec<u8>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(guard) = LingerGuard::take(&self.lingering) else {
            return;
        };
        let (linger, max) = (self.cfg.linger, self.cfg.linger_bytes_max);
        tokio::spawn(async move {
            let mut io = io;
            let written = tokio::time::timeout(linger, io.write_all(&response)).await;
            if matches!(written, Ok(Ok(()))) {
                linger_close(io, linger, max).await;
            }
            drop(guard);
        });
    }
}

/// One slot of the bounded set of sockets being closed slowly.
struct LingerGuard(Arc<AtomicUsize>);

impl LingerGuard {
    fn take(count: &Arc<AtomicUsize>) -> Option<Self> {
        let mut n = count.load(Ordering::Relaxed);
        loop {
            if n >= LINGERING_MAX {
                return None;
            }
            match count.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Self(count.clone())),
                Err(actual) => n = actual,
            }
        }
    }
}

impl Drop for LingerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Stops writing, then reads and discards what the peer still sends until it closes, `linger`
/// passes or `max` bytes were read; then the socket is dropped (closed).
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, linger: Duration, max: u64) {
    let deadline = Instant::now() + linger;
    let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0u64;
    while read < max {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read += n as u64,
            _ => break,
        }
    }
}

/// A socket as hyper sees it: see the module documentation.
pub struct Tracked<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    io: Option<S>,
    state: Arc<ConnState>,
    render: Arc<dyn Fn(u16) -> Vec<u8> + Send + Sync>,
    /// hyper's automatic error response being replaced: our bytes and how many are written.
    replacing: Option<(Vec<u8>, usize)>,
    lingering: Arc<AtomicUsize>,
    linger: Duration,
    linger_bytes_max: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Tracked<S> {
    fn io(&mut self) -> &mut S {
        self.io.as_mut().expect("the socket is present until drop")
    }
}

/// The status of an HTTP/1 response head at the start of `buf`, if it is one.
fn response_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let digits = rest.get(2..5)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Tracked<S> {
    /// Writes what is left of a replacement response; Ready(Ok) once all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = self.replacing.as_mut() {
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let (bytes, written) = (bytes.clone(), *written);
            match Pin::new(self.io()).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    if let Some((_, w)) = self.replacing.as_mut() {
                        *w += n;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether this write is (or continues) a replaced automatic response; a write starting
    /// with `first` begins one when [`Tracked::is_automatic_response`] says so.
    fn replaces(&mut self, first: Option<&[u8]>) -> bool {
        if self.replacing.is_some() {
            return true;
        }
        match first.and_then(|b| self.is_automatic_response(b)) {
            Some(status) => {
                self.state.set_linger();
                self.replacing = Some(((self.render)(status), 0));
                true
            }
            None => false,
        }
    }

    /// Whether hyper is starting a response that no handler produced: its automatic answer to
    /// a request head it could not parse. Our handlers' bodies are JSON, so a write that starts
    /// like a status line while no response is due can only be that.
    fn is_automatic_response(&self, buf: &[u8]) -> Option<u16> {
        let status = response_status(buf)?;
        let due = &self.state.responses_due;
        let mut n = due.load(Ordering::Relaxed);
        while n > 0 {
            match due.compare_exchange_weak(n, n - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return None,
                Err(actual) => n = actual,
            }
        }
        (status >= 400).then_some(status)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(this.io.as_mut().expect("present until drop")).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let s = &this.state;
            if s.in_flight.load(Ordering::Relaxed) == 0
                && s.head_started.load(Ordering::Relaxed) == 0
            {
                s.head_started.store(s.now(), Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.replaces(Some(buf)) {
            return Pin::new(this.io()).poll_write(cx, buf);
        }
        // hyper's own bytes are swallowed; ours go out in their place.
        this.poll_replacement(cx).map_ok(|()| buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]);
        if !this.replaces(first) {
            return Pin::new(this.io()).poll_write_vectored(cx, bufs);
        }
        this.poll_replacement(cx)
            .map_ok(|()| bufs.iter().map(|b| b.len()).sum())
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => Pin::new(this.io()).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_replacement(cx) {
            // A lingering close shuts the write side down itself, after the drop.
            Poll::Ready(Ok(())) if this.state.linger.load(Ordering::Relaxed) => {
                Pin::new(this.io()).poll_flush(cx)
            }
            Poll::Ready(Ok(())) => Pin::new(this.io()).poll_shutdown(cx),
            other => other,
        }
    }
}

impl<S> Drop for Tracked<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        let Some(io) = self.io.take() else { return };
        if !self.state.linger.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(guard) = LingerGuard::take(&self.lingering) else {
            return;
        };
        let (linger, max) = (self.linger, self.linger_bytes_max);
        runtime.spawn(async move {
            linger_close(io, linger, max).await;
            drop(guard);
        });
    }
}
