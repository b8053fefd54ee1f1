//! The running endpoint and its bounded stop: every accepted connection is
//! tracked, so whatever outlasts the grace is cut.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::routes::router;
use super::state::{EndpointState, lock};
use crate::limits;

/// Open connections by id, so a stop can cut the ones that outlast the grace.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, RawFd>>,
    next: AtomicU64,
}

impl Connections {
    fn track(self: &Arc<Self>, inner: TcpStream) -> TrackedStream {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, inner.as_raw_fd());
        TrackedStream {
            inner,
            id,
            conns: self.clone(),
        }
    }

    /// Shuts every open socket down: pending reads see end of file and writes
    /// fail, so each connection's task (a half-sent body, a WebSocket) ends.
    fn cut_all(&self) -> usize {
        let open = lock(&self.open);
        for &fd in open.values() {
            // SAFETY: `fd` belongs to a live `TrackedStream`: its entry is removed
            // (under this lock) in `Drop` before the stream closes the descriptor,
            // so it cannot have been closed or reused. shutdown(2) does not close it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        open.len()
    }
}

/// A TCP connection registered in [`Connections`].
struct TrackedStream {
    inner: TcpStream,
    id: u64,
    conns: Arc<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        lock(&self.conns.open).remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct TrackedListener {
    inner: TcpListener,
    conns: Arc<Connections>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (self.conns.track(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The endpoint, running.
pub struct Server {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: oneshot::Sender<()>,
    conns: Arc<Connections>,
    state: Arc<EndpointState>,
}

impl Server {
    /// Serves [`router`] on `listener` until [`Server::shutdown`].
    pub fn spawn(listener: TcpListener, state: Arc<EndpointState>) -> Self {
        let conns = Arc::new(Connections::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = TrackedListener {
            inner: listener,
            conns: conns.clone(),
        };
        let task = tokio::spawn(
            axum::serve(listener, router(state.clone()))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self {
            task,
            stop,
            conns,
            state,
        }
    }

    /// Stops at once, without the grace: for a recording torn down without an
    /// orderly stop (an error, a panic, a dropped future). WebSockets are told
    /// to close, the listener stops, every open connection is cut and the
    /// serving task is aborted; nothing here waits.
    pub fn abort(self) {
        self.state.closing.send_replace(true);
        let _ = self.stop.send(());
        self.conns.cut_all();
        self.task.abort();
    }

    /// Stops accepting, lets in-flight requests finish for at most
    /// [`limits::SHUTDOWN_GRACE`], closes WebSockets, then cuts whatever is
    /// still open. Returns within about the grace plus half a second whatever
    /// clients do.
    pub async fn shutdown(self) {
        let Self {
            mut task,
            stop,
            conns,
            state,
        } = self;
        state.closing.send_replace(true);
        let _ = stop.send(());
        if tokio::time::timeout(limits::SHUTDOWN_GRACE, &mut task)
            .await
            .is_ok()
        {
            return;
        }
        let n = conns.cut_all();
        tracing::warn!(
            "cut {n} client connection(s) still open {:?} after the stop",
            limits::SHUTDOWN_GRACE
        );
        if tokio::time::timeout(Duration::from_millis(500), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
