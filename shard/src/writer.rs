//! Writing to clients: one connection's [`Socket`] and everything that sends on it.
//!
//! Bytes to send live in each client's [`Session`](crate::session::Session) (its outbox); this
//! module moves them to the socket, as few system calls as possible:
//!
//! - **Inline**: the replies to a client's own packets (CONNACK, acknowledgements, PINGRESP) are
//!   sent by its connection task once everything it read is handled ([`flush_now`]).
//! - **Flusher**: deliveries mark the socket with [`Socket::wake`]; the shard's one [`flusher`]
//!   task sends every marked socket's outbox in one vectored `sendmsg` right after the burst of
//!   work that filled it, so a fan-out costs one write per subscriber, not one per message.
//! - **Writer task**: only a socket that does not take everything at once gets a task of its own
//!   (`write_loop`), which waits for the socket to drain and parks between sends. The shard's
//!   sweep retires writers idle for two sweeps ([`retire_idle`]), so an idle connection holds no
//!   task; the next byte to send starts a new one.
//!
//! Closing is one call, [`Socket::close`] (or [`Socket::close_for`] a reason the log names): it marks the socket closed, shuts its read side (the
//! connection task wakes from its read with end-of-file) and wakes the writer and the connection
//! task. The stream is owned here, so the descriptor stays valid until the last holder of the
//! `Rc<Socket>` (connection task, writer task, the shard's table) lets go.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use bytes::Bytes;
use futures_lite::future::poll_fn;
use futures_lite::AsyncWrite;
use glommio::net::TcpStream;

use crate::mesh::ConnId;
use crate::router::CloseReason;
use crate::shard::Shard;
use crate::stats::Stats;

/// Most buffers in one vectored send.
const MAX_IOVECS: usize = 64;

/// Sockets the flusher sends between two yields to the executor.
const FLUSH_BATCH: usize = 512;

/// One connection's socket and its writer's state. Lives on its shard only.
#[derive(Debug)]
pub struct Socket {
    conn: ConnId,
    stream: RefCell<TcpStream>,
    fd: i32,
    closed: Cell<bool>,
    /// Why the broker closed it, when it did so for a reason of its own (see [`Socket::close_for`]).
    close_reason: Cell<Option<CloseReason>>,
    /// The connection task waits for [`Socket::signal`] (CONNECT or SUBSCRIBE completed, or close).
    signalled: Cell<bool>,
    task: RefCell<Option<Waker>>,
    writer_running: Cell<bool>,
    /// The running writer's waker while it waits for bytes.
    writer_parked: RefCell<Option<Waker>>,
    /// Asks a parked writer to end (see [`retire_idle`]).
    writer_retire: Cell<bool>,
    /// The shard's sweep tick at the writer's last send.
    writer_active_tick: Cell<u32>,
    /// Queued for the flusher.
    flush_scheduled: Cell<bool>,
    /// Waits for the writer to finish (the connection closing).
    writer_done: RefCell<Option<Waker>>,
}

impl Socket {
    /// The socket of connection `conn`.
    pub fn new(conn: ConnId, stream: TcpStream) -> Rc<Self> {
        Rc::new(Self {
            conn,
            fd: stream.as_raw_fd(),
            stream: RefCell::new(stream),
            closed: Cell::new(false),
            close_reason: Cell::new(None),
            signalled: Cell::new(false),
            task: RefCell::new(None),
            writer_running: Cell::new(false),
            writer_parked: RefCell::new(None),
            writer_retire: Cell::new(false),
            writer_active_tick: Cell::new(0),
            flush_scheduled: Cell::new(false),
            writer_done: RefCell::new(None),
        })
    }

    /// The connection this socket carries.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The stream, for the connection task's reads (never borrowed across an `.await`).
    pub fn stream(&self) -> &RefCell<TcpStream> {
        &self.stream
    }

    /// Whether the broker closed this connection.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Why the broker closed this connection, if it closed it for a reason of its own.
    pub fn closed_by(&self) -> Option<CloseReason> {
        self.close_reason.get()
    }

    /// Closes the connection for `reason` (the first reason given is kept).
    pub fn close_for(&self, reason: CloseReason) {
        if self.close_reason.get().is_none() && !self.closed.get() {
            self.close_reason.set(Some(reason));
        }
        self.close();
    }

    /// Closes the connection from the broker's side: see the module doc.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        // SAFETY: `fd` belongs to `self.stream`, which is open for as long as `self` exists.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RD);
        }
        if let Some(waker) = self.writer_parked.borrow_mut().take() {
            waker.wake();
        }
        self.signal();
    }

    /// Shuts both directions: a pending write fails at once (a teardown that waited too long).
    pub fn abort(&self) {
        self.closed.set(true);
        // SAFETY: as in `close`.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        if let Some(waker) = self.writer_parked.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Wakes the connection task waiting in [`Socket::signalled`].
    pub fn signal(&self) {
        self.signalled.set(true);
        if let Some(waker) = self.task.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits at most `timeout` for [`Socket::signalled`]; false if the time ran out.
    pub async fn signalled_within(&self, timeout: std::time::Duration) -> bool {
        futures_lite::future::or(
            async {
                self.signalled().await;
                true
            },
            async {
                glommio::timer::Timer::new(timeout).await;
                false
            },
        )
        .await
    }

    /// Waits for [`Socket::signal`] (or a close), then resets it.
    pub fn signalled(&self) -> impl std::future::Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.signalled.replace(false) || self.closed.get() {
                Poll::Ready(())
            } else {
                *self.task.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// The session has bytes to send: a running writer is woken; otherwise the socket is queued
    /// (once) for the shard's flusher.
    pub fn wake(self: &Rc<Self>, shard: &Shard) {
        if self.writer_running.get() {
            if let Some(waker) = self.writer_parked.borrow_mut().take() {
                waker.wake();
            }
            return;
        }
        if !self.flush_scheduled.replace(true) {
            shard.flush_queue().push(Rc::downgrade(self));
        }
    }

    fn start_writer(self: &Rc<Self>, shard: &Rc<Shard>) {
        if self.writer_running.replace(true) {
            return;
        }
        self.writer_retire.set(false);
        glommio::spawn_local(write_loop(Rc::clone(shard), Rc::clone(self))).detach();
    }

    /// The writer's wait for work: ready when bytes are queued, the connection closes, or the
    /// writer is retired (then `false`: end the task).
    fn writer_wait<'a>(&'a self, shard: &'a Shard) -> impl std::future::Future<Output = bool> + 'a {
        poll_fn(move |cx| {
            if shard.pending_bytes(self.conn) > 0 {
                Poll::Ready(true)
            } else if self.closed.get() || self.writer_retire.get() {
                Poll::Ready(false)
            } else {
                *self.writer_parked.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    fn writer_finished(&self) {
        self.writer_running.set(false);
        self.writer_parked.borrow_mut().take();
        if let Some(waker) = self.writer_done.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until no writer runs (everything queued was written, or the socket failed).
    pub fn writer_idle(&self) -> impl std::future::Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.writer_running.get() {
                *self.writer_done.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    }
}

/// Sockets waiting for the flusher.
#[derive(Debug, Default)]
pub struct FlushQueue {
    sockets: RefCell<Vec<Weak<Socket>>>,
    flusher: RefCell<Option<Waker>>,
}

impl FlushQueue {
    fn push(&self, socket: Weak<Socket>) {
        self.sockets.borrow_mut().push(socket);
        if let Some(waker) = self.flusher.borrow_mut().take() {
            waker.wake();
        }
    }

    /// The flusher's wait: the sockets queued since it last ran.
    fn next_batch<'a>(
        &'a self,
        into: &'a mut Vec<Weak<Socket>>,
    ) -> impl std::future::Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            let mut queue = self.sockets.borrow_mut();
            if queue.is_empty() {
                *self.flusher.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                std::mem::swap(&mut *queue, into);
                Poll::Ready(())
            }
        })
    }
}

/// The shard's flusher: sends the outboxes of sockets that have something to send and no writer
/// task, each in one write, right after the burst of work that filled them.
pub async fn flusher(shard: Rc<Shard>) {
    let mut batch = Vec::new();
    loop {
        shard.flush_queue().next_batch(&mut batch).await;
        for (index, socket) in batch.drain(..).enumerate() {
            let Some(socket) = socket.upgrade() else {
                continue;
            };
            if socket.flush_scheduled.replace(false) {
                flush_now(&shard, &socket);
            }
            if index % FLUSH_BATCH == FLUSH_BATCH - 1 {
                glommio::yield_if_needed().await;
            }
        }
    }
}

/// Sends the session's outbox at once, without a writer task, when no writer runs and the socket
/// takes it all; whatever it does not take is left to a writer task.
pub fn flush_now(shard: &Rc<Shard>, socket: &Rc<Socket>) {
    if socket.writer_running.get() {
        socket.wake(shard);
        return;
    }
    let mut chunks = Vec::new();
    shard.poll_transmit(socket.conn, &mut chunks);
    if chunks.is_empty() {
        return;
    }
    let mut sent = send_vectored(socket.fd, &chunks, 0).unwrap_or(0);
    Stats::add(&shard.stats().bytes_sent, sent as u64);
    let mut rest = Vec::new();
    for chunk in chunks {
        if sent >= chunk.len() {
            sent -= chunk.len();
        } else {
            rest.push(chunk.slice(sent..));
            sent = 0;
        }
    }
    if rest.is_empty() {
        shard.release_queued(socket.conn);
    } else {
        shard.restore_transmit(socket.conn, rest);
        socket.start_writer(shard);
    }
}

/// Drains the session's outbox into the socket, waiting for more between sends, until the
/// connection closes or the shard retires the writer of an idle connection.
async fn write_loop(shard: Rc<Shard>, socket: Rc<Socket>) {
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        shard.poll_transmit(socket.conn, &mut chunks);
        if chunks.is_empty() {
            if socket.writer_wait(&shard).await {
                continue;
            }
            break;
        }
        match write_all(&socket, &chunks).await {
            Ok(written) => Stats::add(&shard.stats().bytes_sent, written as u64),
            Err(err) => {
                if err.kind() == io::ErrorKind::TimedOut {
                    Stats::add(&shard.stats().write_timeouts, 1);
                }
                socket.writer_finished();
                socket.close_for(CloseReason::WriteFailed);
                return;
            }
        }
        socket.writer_active_tick.set(shard.sweep_tick());
        chunks.clear();
        // Acknowledgements may have opened the inflight window while this send was under way.
        shard.release_queued(socket.conn);
    }
    socket.writer_finished();
}

/// Ends the writers of sockets parked since the previous sweep or earlier (`tick` is the new
/// sweep's number).
pub fn retire_idle<'a>(sockets: impl Iterator<Item = &'a Rc<Socket>>, tick: u32) {
    for socket in sockets {
        let parked = socket.writer_parked.borrow().is_some();
        if parked && tick.wrapping_sub(socket.writer_active_tick.get()) >= 2 {
            socket.writer_retire.set(true);
            if let Some(waker) = socket.writer_parked.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// Writes every chunk, as few system calls as the socket allows: a non-blocking `sendmsg` with
/// up to [`MAX_IOVECS`] buffers, and, when the socket is full, glommio's write of the current
/// chunk, which waits for the socket to drain.
async fn write_all(socket: &Socket, chunks: &[Bytes]) -> io::Result<usize> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let sent = match send_vectored(socket.fd, &chunks[index..], offset) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let chunk = &chunks[index][offset..];
                poll_fn(|cx| Pin::new(&mut *socket.stream.borrow_mut()).poll_write(cx, chunk))
                    .await?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        let mut left = sent;
        while left > 0 && index < chunks.len() {
            let available = chunks[index].len() - offset;
            if left >= available {
                left -= available;
                index += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    Ok(total)
}

/// Writes one packet's bytes before a session exists (a refusing CONNACK).
pub async fn write_once(socket: &Socket, bytes: Bytes) {
    let _ = write_all(socket, &[bytes]).await;
}

fn send_vectored(fd: i32, chunks: &[Bytes], offset: usize) -> io::Result<usize> {
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    let mut count = 0;
    for (i, chunk) in chunks.iter().take(MAX_IOVECS).enumerate() {
        let bytes = if i == 0 { &chunk[offset..] } else { &chunk[..] };
        iovecs[count] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        count += 1;
    }
    // SAFETY: a zeroed msghdr is valid; it points at `count` initialised iovecs that borrow
    // `chunks`, which outlive the call.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iovecs.as_mut_ptr();
        msg.msg_iovlen = count;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
