//! Start-up and shutdown of the shards: one pinned glommio executor per shard, the mesh of SPSC
//! rings between them, and `SO_REUSEPORT` listeners on every shard so the kernel spreads new
//! connections across cores.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::timer::Timer;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use tracing::{info, warn};

use crate::config::ShardConfig;
use crate::connection::{self, ConnectionSlot, READ_SCRATCH};
use crate::control::{
    Authenticator, BrokerHandle, ShardControl, COMMAND_POLL, STATS_PUBLISH, TOPIC_COUNTS_FLUSH,
};
use crate::hot_topics::TopicCounts;
use crate::listen::{self, Claim};
use crate::mesh::{ShardId, ShardMsg, ShardSet};
use crate::shard::Shard;
use crate::stats::Stats;
use crate::throttle::Throttle;
use crate::writer;

/// How often a shard retires the writers of connections idle since the previous sweep: a
/// connection's writer ends after one to two of these without a send.
const WRITER_IDLE_SWEEP: Duration = Duration::from_secs(5);

/// How often a shard looks for offline sessions whose expiry has come and held wills whose
/// delay has passed (`Router::handle_timeout`). The router keeps those deadlines in a heap, so a
/// look with nothing due is one comparison; MQTT gives the intervals in seconds.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// At most one line per this interval about refused connections (per shard and listener).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Mesh messages a receiver handles before it lets the shard's other tasks run (as
/// `PACKETS_PER_TURN` in `connection`).
const MESSAGES_PER_TURN: u32 = 1024;

/// How often a shard looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// A running broker: its shards and the addresses they listen on.
pub struct Broker {
    listening: Vec<SocketAddr>,
    /// Keeps other processes off the listening addresses while the broker runs.
    _claim: Claim,
    handle: BrokerHandle,
    shutdown: Arc<AtomicBool>,
    handles: PoolThreadHandles<()>,
}

impl Broker {
    /// Starts the shards and returns once every shard listens on every address.
    /// CONNECTs are decided by `authenticator` (the control core) when given; without one every
    /// client is accepted with no ACL.
    pub fn start(
        mut config: ShardConfig,
        pin: bool,
        authenticator: Option<Authenticator>,
    ) -> io::Result<Broker> {
        if config.shards == 0 || config.shards > ShardSet::MAX_SHARDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shards must be between 1 and {}", ShardSet::MAX_SHARDS),
            ));
        }
        end_process_on_panic();
        let mut claim = listen::claim(&config.listen)?;
        config.listen = claim.addresses().to_vec();
        let listening = config.listen.clone();
        let shards = config.shards;
        let config = Arc::new(config);
        let shutdown = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (handle, controls) = BrokerHandle::new(shards);
        // Each shard takes its own slot once it knows its id (start-up only).
        let controls: Arc<Mutex<Vec<Option<ShardControl>>>> =
            Arc::new(Mutex::new(controls.into_iter().map(Some).collect()));
        let mesh = MeshBuilder::<ShardMsg, _>::full(shards, config.mesh_capacity);
        let placement = match (pin, CpuSet::online()) {
            (true, Ok(cpus)) => PoolPlacement::MaxSpread(shards, Some(cpus)),
            _ => PoolPlacement::Unbound(shards),
        };
        let stop = Arc::clone(&shutdown);
        let handles = LocalExecutorPoolBuilder::new(placement)
            .name("shard")
            .on_all_shards(move || {
                let mesh = mesh.clone();
                let config = Arc::clone(&config);
                let ready = ready_tx.clone();
                let stop = Arc::clone(&stop);
                let connections = Arc::clone(&connections);
                let controls = Arc::clone(&controls);
                let authenticator = authenticator.clone();
                async move {
                    run_shard(
                        mesh,
                        config,
                        ready,
                        stop,
                        connections,
                        controls,
                        authenticator,
                    )
                    .await
                }
            })
            .map_err(|err| io::Error::other(format!("starting shards: {err}")))?;
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    shutdown.store(true, Ordering::Release);
                    return Err(io::Error::other(err));
                }
                Err(_) => return Err(io::Error::other("a shard stopped during start-up")),
            }
        }
        claim.release_reservations();
        Ok(Broker {
            listening,
            _claim: claim,
            handle,
            shutdown,
            handles,
        })
    }

    /// The addresses the broker listens on (port 0 resolved).
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// A handle for commands and figures, usable from any thread.
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// A flag that, once set, makes every shard stop accepting, close its connections and end.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Waits for every shard to end.
    pub fn join(self) {
        for result in self.handles.join_all() {
            if let Err(err) = result {
                warn!(error = %err, "shard ended with an error");
            }
        }
    }
}

/// A panic anywhere ends the process with a non-zero status (after the usual report). A shard
/// that died would leave its peers waiting and its clients unanswered; unwinding only the
/// panicking thread cannot restore the state it shared a router with, so the broker stops and the
/// service manager restarts it (see `tuning/systemd`).
fn end_process_on_panic() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            tracing::error!(%info, "a thread panicked; the broker stops");
            std::process::abort();
        }));
    });
}

async fn run_shard(
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    config: Arc<ShardConfig>,
    ready: mpsc::Sender<Result<(), String>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    controls: Arc<Mutex<Vec<Option<ShardControl>>>>,
    authenticator: Option<Authenticator>,
) {
    let Ok((senders, mut receivers)) = mesh.join().await else {
        let _ = ready.send(Err("joining the shard mesh failed".into()));
        return;
    };
    let id = ShardId(senders.peer_id());
    let shard = Shard::new(
        id,
        Arc::clone(&config),
        senders,
        READ_SCRATCH,
        authenticator,
    );
    let span = tracing::info_span!("shard", id = id.0);
    let _enter = span.enter();

    for (_, receiver) in receivers.streams() {
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            let mut handled = 0u32;
            while let Some(msg) = receiver.recv().await {
                shard.handle_mesh(msg).await;
                // A ring that is never empty must not keep this shard's other tasks waiting.
                handled = handled.wrapping_add(1);
                if handled % MESSAGES_PER_TURN == 0 {
                    futures_lite::future::yield_now().await;
                }
            }
        })
        .detach();
    }

    let control = controls
        .lock()
        .ok()
        .and_then(|mut slots| slots.get_mut(id.0).and_then(Option::take));
    let Some(control) = control else {
        let _ = ready.send(Err(format!("no control channel for shard {}", id.0)));
        return;
    };
    spawn_control_tasks(&shard, control);

    let mut accepts = Vec::new();
    for addr in &config.listen {
        match listen::bind(*addr) {
            Ok(listener) => {
                let shard = Rc::clone(&shard);
                let connections = Arc::clone(&connections);
                accepts.push(glommio::spawn_local(accept_loop(
                    shard,
                    listener,
                    *addr,
                    connections,
                )));
            }
            Err(err) => {
                let _ = ready.send(Err(format!("binding {addr}: {err}")));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    info!(shard = id.0, "shard started");

    while !stop.load(Ordering::Acquire) {
        Timer::new(SHUTDOWN_POLL).await;
    }
    for accept in accepts {
        accept.cancel().await;
    }
    shard.close_all();
    let deadline = Instant::now() + config.shutdown_grace;
    while shard.stats().connections.get() > 0 && Instant::now() < deadline {
        Timer::new(Duration::from_millis(10)).await;
        shard.close_all();
    }
    info!(shard = id.0, "shard stopped");
}

/// Drains commands from other threads and publishes this shard's figures, on timers.
fn spawn_control_tasks(shard: &Rc<Shard>, control: ShardControl) {
    let commands = control.commands;
    let commanded = Rc::clone(shard);
    glommio::spawn_local(async move {
        loop {
            Timer::new(COMMAND_POLL).await;
            while let Ok(command) = commands.try_recv() {
                commanded.handle_command(command).await;
            }
        }
    })
    .detach();
    let topic_counts = control.topic_counts;
    let hot = Rc::clone(shard);
    glommio::spawn_local(async move {
        loop {
            Timer::new(TOPIC_COUNTS_FLUSH).await;
            let counts = hot.with_router(|router| router.hot_topics_mut().drain());
            if counts != TopicCounts::default() {
                // Nobody consuming (or far behind): this interval's counts are dropped.
                let _ = topic_counts.try_send(counts);
            }
        }
    })
    .detach();
    glommio::spawn_local(writer::flusher(Rc::clone(shard))).detach();
    let sweeper = Rc::clone(shard);
    glommio::spawn_local(async move {
        loop {
            Timer::new(WRITER_IDLE_SWEEP).await;
            sweeper.retire_writers();
            let drops = sweeper.with_router(|router| router.drop_reports());
            for (client_id, username, dropped) in drops {
                warn!(%client_id, username = ?username.as_deref(), dropped, "messages dropped for a client that cannot keep up (queue or outbox full)");
            }
        }
    })
    .detach();
    let timers = Rc::clone(shard);
    glommio::spawn_local(async move {
        loop {
            Timer::new(EXPIRY_TICK).await;
            let wills = timers.with_router(|router| router.handle_timeout(Instant::now()));
            for fanout in wills {
                timers.fan_out(fanout).await;
            }
        }
    })
    .detach();
    let published = control.published;
    let counted = Rc::clone(shard);
    glommio::spawn_local(async move {
        loop {
            published[counted.id().0].store(&counted.stats().snapshot());
            Timer::new(STATS_PUBLISH).await;
        }
    })
    .detach();
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    listening: SocketAddr,
    connections: Arc<AtomicUsize>,
) {
    let mut at_capacity = Throttle::new(REFUSAL_LOG_INTERVAL, 1);
    let mut out_of_descriptors = Throttle::new(REFUSAL_LOG_INTERVAL, 1);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let max = shard.config().max_connections;
                if connections.fetch_add(1, Ordering::Relaxed) >= max {
                    connections.fetch_sub(1, Ordering::Relaxed);
                    Stats::add(&shard.stats().connections_refused, 1);
                    if let Some(suppressed) = at_capacity.allow(Instant::now()) {
                        warn!(
                            listener = %listening,
                            max_connections = max,
                            suppressed,
                            "connection refused: max_connections reached"
                        );
                    }
                    continue;
                }
                // Spawned directly: wrapping `serve` in another async block would store its
                // (large) future twice in the task.
                let slot = ConnectionSlot(Arc::clone(&connections));
                glommio::spawn_local(connection::serve(
                    Rc::clone(&shard),
                    stream,
                    listening,
                    slot,
                ))
                .detach();
            }
            Err(err) => {
                let errno = match &err {
                    glommio::GlommioError::IoError(io) => io.raw_os_error(),
                    _ => None,
                };
                if matches!(errno, Some(libc::EMFILE | libc::ENFILE)) {
                    // Out of descriptors is a normal condition under load: back off, keep serving.
                    Stats::add(&shard.stats().fd_exhausted, 1);
                    if let Some(suppressed) = out_of_descriptors.allow(Instant::now()) {
                        warn!(
                            listener = %listening,
                            error = %err,
                            suppressed,
                            "cannot accept a connection: out of file descriptors; raise the \
                             open-file limit (LimitNOFILE=, ulimit -n) or lower max_connections"
                        );
                    }
                    Timer::new(Duration::from_millis(20)).await;
                } else {
                    Stats::add(&shard.stats().accept_errors, 1);
                    Timer::new(Duration::from_millis(1)).await;
                }
            }
        }
    }
}
