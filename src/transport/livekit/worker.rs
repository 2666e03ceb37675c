//! Worker mode: the backend registers with the LiveKit server as an agent worker and the server
//! dispatches rooms to it — LiveKit's own agent protocol (`livekit_agent.proto`), as LiveKit
//! Agents workers speak it, on the `/agent` WebSocket with protobuf `WorkerMessage` /
//! `ServerMessage`.
//!
//! - **Register**: a token with the `agent` video grant, then `RegisterWorkerRequest` (job type
//!   room, `agent_name`); the server answers with the worker id. A refused token is
//!   `VB_ERR_UNAUTHORIZED` from `vb_backend_start`.
//! - **Availability**: the server asks before each job (answer within 10 s); the worker says no
//!   when draining, at `max_jobs`, at `load_threshold`, or when no host takes sessions; the
//!   server then asks another worker.
//! - **Assignment**: the job's room and token become a session (`transport: "webrtc"`,
//!   `connection_token`) handed to the host ([`Arrivals::arrive`], on a blocking thread); the
//!   job is reported running, or failed with the host's refusal or the join's error.
//! - **Status**: every 2.5 s and after each change, `UpdateWorkerStatus` with the measured CPU
//!   load ([`CpuLoad`]), the job count and full/available; a job whose session stopped (the
//!   user left) is reported `JS_SUCCESS`. `JobTermination` stops the job's session.
//! - **Lost connection**: the worker registers again (backoff from the backend's `retry`); jobs
//!   under way go on, their rooms are separate connections.
//! - **Drain** ([`Listener::drain`]): reported full, takes nothing new, and unregisters once its
//!   jobs have ended.
//!
//! Everything runs in one task on the I/O runtime; the host's hook and session starts run on
//! blocking threads so the socket keeps answering.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::server_message::Message as FromServer;
use proto::worker_message::Message as ToServer;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::TRANSPORT;
use super::recover;
use super::settings::{NAME, Settings, WorkerSettings};
use crate::config::{Secret, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::net::{self, WebSocket, redact_url};
use crate::transport::cpu_load::CpuLoad;
use crate::transport::{Arrivals, Arrived, Listener, Recovered};

/// How often the worker reports its status (what LiveKit Agents workers do).
const STATUS_EVERY: Duration = Duration::from_millis(2500);
/// How often jobs are checked for having ended.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long a reservation waits for its assignment (the server waits 10 s for availability).
const RESERVATION: Duration = Duration::from_secs(15);
/// How long `stop` waits for the worker's task.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the backend tells its worker.
enum Control {
    Drain,
    Stop,
}

/// Counters the backend reads without asking the task.
#[derive(Default)]
struct Shared {
    /// Jobs accepted and not yet ended (including those still starting).
    jobs: AtomicUsize,
    draining: AtomicBool,
}

/// A registered worker, as the backend holds it.
pub struct Worker {
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
    done: crossbeam_channel::Receiver<()>,
    /// For bringing back rooms of dead workers.
    settings: Settings,
    agent_name: String,
}

impl Worker {
    /// Registers with the server and starts taking jobs. Blocks until registered (or why not);
    /// not on the I/O runtime.
    pub fn start(
        settings: Settings,
        worker: WorkerSettings,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Worker> {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (registered_tx, registered) = crossbeam_channel::bounded(1);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared::default());
        let agent_name = worker.agent_name.clone();
        let task = WorkerTask {
            settings: settings.clone(),
            worker,
            arrivals,
            shared: shared.clone(),
            control: control_rx,
            jobs: HashMap::new(),
            load: CpuLoad::new(),
            seq: 0,
            runtime: runtime.clone(),
        };
        runtime.spawn(async move {
            let _done = done_tx;
            task.run(registered_tx).await;
        });
        match registered.recv() {
            Ok(Ok(())) => Ok(Worker {
                control,
                shared,
                done,
                settings,
                agent_name,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal(format!(
                "{NAME}: the worker's task ended before registering"
            ))),
        }
    }
}

impl Listener for Worker {
    fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
        let _ = self.control.send(Control::Drain);
    }

    fn busy(&self) -> bool {
        self.shared.jobs.load(Ordering::Acquire) > 0
    }

    fn stop(&self) {
        let _ = self.control.send(Control::Stop);
        let _ = self.done.recv_timeout(STOP_TIMEOUT);
    }

    fn can_recover(&self, config: &SessionConfig) -> bool {
        recover::can_recover(config)
    }

    fn recover(&self, id: &str, config: &SessionConfig) -> Result<Recovered> {
        recover::recover(&self.settings, &self.agent_name, id, config)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
    }
}

/// One job: its session once it has started.
struct Job {
    /// When the worker said it was available, while the assignment has not come (a server that
    /// chose another worker never sends it: the reservation lapses).
    reserved: Option<Instant>,
    session: Option<Arc<dyn Arrived>>,
}

/// What happened to a job started on a blocking thread.
struct Started {
    job_id: String,
    result: Result<Arc<dyn Arrived>>,
}

/// Why one registered connection ended.
enum Exit {
    /// Stop, or drained and every job over: unregister for good.
    Done,
    /// The connection was lost: register again.
    Lost,
}

struct WorkerTask {
    settings: Settings,
    worker: WorkerSettings,
    arrivals: Arc<dyn Arrivals>,
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    jobs: HashMap<String, Job>,
    load: CpuLoad,
    /// `UpdateWorkerStatus.seq`: monotonic per registration.
    seq: u64,
    runtime: tokio::runtime::Handle,
}

impl WorkerTask {
    async fn run(mut self, registered: crossbeam_channel::Sender<Result<()>>) {
        let mut registered = Some(registered);
        let mut failures = 0u32;
        loop {
            let socket = match self.register().await {
                Ok(socket) => socket,
                Err(e) => {
                    if let Some(first) = registered.take() {
                        let _ = first.send(Err(e));
                        return;
                    }
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(net::backoff(&self.settings.retry, failures)) => {}
                        Some(Control::Stop) = self.control.recv() => return,
                    }
                    continue;
                }
            };
            failures = 0;
            if let Some(first) = registered.take() {
                let _ = first.send(Ok(()));
            }
            match self.serve(socket).await {
                Exit::Done => return,
                Exit::Lost => continue,
            }
        }
    }

    /// Connects to `/agent` and registers; returns the registered socket.
    async fn register(&mut self) -> Result<WebSocket> {
        let context = |e: Error| {
            Error::new(
                e.status(),
                format!(
                    "{} (registering as an agent worker at {})",
                    e.message(),
                    redact_url(&self.settings.url)
                ),
            )
        };
        let token = self.settings.worker_token()?;
        let url = format!("{}/agent?protocol=1", self.settings.url);
        let auth = format!("Bearer {}", token.expose());
        let mut socket = net::connect_websocket(
            NAME,
            &url,
            &[("Authorization", &auth)],
            self.settings.timeout,
            &self.settings.retry,
        )
        .await
        .map_err(context)?;
        let register = proto::RegisterWorkerRequest {
            r#type: proto::JobType::JtRoom as i32,
            agent_name: self.worker.agent_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        };
        send(&mut socket, ToServer::Register(register))
            .await
            .map_err(context)?;
        let answer = tokio::time::timeout(self.settings.timeout, next_message(&mut socket))
            .await
            .map_err(|_| {
                context(Error::new(
                    VbStatus::VB_ERR_TIMEOUT,
                    format!(
                        "{NAME}: no answer to the registration within {} ms",
                        self.settings.timeout.as_millis()
                    ),
                ))
            })?
            .map_err(context)?;
        match answer {
            FromServer::Register(_) => {
                self.seq = 0;
                Ok(socket)
            }
            other => Err(context(Error::new(
                VbStatus::VB_ERR_PROVIDER,
                format!(
                    "{NAME}: the server answered the registration with {}",
                    kind(&other)
                ),
            ))),
        }
    }

    /// Serves one registered connection until it is lost, or the worker stops or has drained.
    async fn serve(&mut self, mut socket: WebSocket) -> Exit {
        let (started_tx, mut started_rx) = mpsc::unbounded_channel::<Started>();
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            let outcome = tokio::select! {
                message = next_message(&mut socket) => match message {
                    Ok(message) => self.on_server(&mut socket, message, &started_tx).await,
                    Err(e) => Err(e),
                },
                Some(started) = started_rx.recv() => self.on_started(&mut socket, started).await,
                _ = status.tick() => self.report_status(&mut socket).await,
                _ = sweep.tick() => self.sweep(&mut socket).await,
                control = self.control.recv() => match control {
                    Some(Control::Drain) => self.report_status(&mut socket).await,
                    Some(Control::Stop) | None => {
                        let _ = socket.close(None).await;
                        return Exit::Done;
                    }
                },
            };
            if outcome.is_err() {
                return Exit::Lost;
            }
            if self.shared.draining.load(Ordering::Acquire) && self.jobs.is_empty() {
                // Drained: closing the socket unregisters the worker.
                let _ = socket.close(None).await;
                return Exit::Done;
            }
        }
    }

    async fn on_server(
        &mut self,
        socket: &mut WebSocket,
        message: FromServer,
        started: &mpsc::UnboundedSender<Started>,
    ) -> Result<()> {
        match message {
            FromServer::Availability(request) => {
                let Some(job) = request.job else {
                    return Ok(());
                };
                let available = self.has_room_for_a_job();
                if available {
                    // Reserved until the assignment comes (or never does: swept as over).
                    self.jobs.insert(
                        job.id.clone(),
                        Job {
                            reserved: Some(Instant::now()),
                            session: None,
                        },
                    );
                    self.shared.jobs.store(self.jobs.len(), Ordering::Release);
                }
                let answer = proto::AvailabilityResponse {
                    job_id: job.id.clone(),
                    available,
                    participant_identity: self.agent_identity(&job.id),
                    participant_name: "voicebackend agent".to_owned(),
                    ..Default::default()
                };
                send(socket, ToServer::Availability(answer)).await
            }
            FromServer::Assignment(assignment) => {
                let Some(job) = assignment.job else {
                    return Ok(());
                };
                let url = assignment.url.filter(|u| !u.is_empty());
                self.start_job(job, url, Secret::new(assignment.token), started);
                Ok(())
            }
            FromServer::Termination(termination) => {
                if let Some(job) = self.jobs.remove(&termination.job_id) {
                    self.shared.jobs.store(self.jobs.len(), Ordering::Release);
                    if let Some(session) = job.session {
                        self.runtime.spawn_blocking(move || session.end());
                    }
                }
                self.report_status(socket).await
            }
            FromServer::Register(_) | FromServer::Pong(_) => Ok(()),
            FromServer::GoAway(_) => Err(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{NAME}: the server is draining this worker connection"),
            )),
        }
    }

    /// The agent's identity in the room of job `job_id` (what the availability answer asks for).
    fn agent_identity(&self, job_id: &str) -> String {
        format!("{}-{job_id}", self.settings.identity)
    }

    /// Whether one more job fits: not draining, under `max_jobs` and the load threshold, and a
    /// host takes sessions.
    fn has_room_for_a_job(&mut self) -> bool {
        let jobs = self.jobs.len() as u32;
        let max = self.worker.max_jobs;
        !self.shared.draining.load(Ordering::Acquire)
            && (max == 0 || jobs < max)
            && self.load.sample() < self.worker.load_threshold
            && self.arrivals.accepting()
    }

    /// Opens the job's session through the host, on a blocking thread.
    fn start_job(
        &mut self,
        job: proto::Job,
        url: Option<String>,
        token: Secret,
        started: &mpsc::UnboundedSender<Started>,
    ) {
        self.jobs.insert(
            job.id.clone(),
            Job {
                reserved: None,
                session: None,
            },
        );
        self.shared.jobs.store(self.jobs.len(), Ordering::Release);
        let (config, info) = job_session(&job, url, token, self.agent_identity(&job.id));
        let arrivals = self.arrivals.clone();
        let started = started.clone();
        let job_id = job.id;
        self.runtime.spawn_blocking(move || {
            // A host hook that panics fails the job; the worker must still hear of it, or the job
            // would count against the worker forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                arrivals.arrive(config, info)
            }))
            .unwrap_or_else(|_| {
                Err(Error::new(
                    VbStatus::VB_ERR_PANIC,
                    "the host's hook for arriving sessions panicked",
                ))
            });
            let _ = started.send(Started { job_id, result });
        });
    }

    /// A job's session started (the job runs) or could not (the job failed).
    async fn on_started(&mut self, socket: &mut WebSocket, started: Started) -> Result<()> {
        let status = match started.result {
            Ok(session) => match self.jobs.get_mut(&started.job_id) {
                Some(job) => {
                    job.session = Some(session);
                    Ok(())
                }
                None => {
                    // Terminated while it was starting.
                    self.runtime.spawn_blocking(move || session.end());
                    return Ok(());
                }
            },
            Err(e) => {
                self.jobs.remove(&started.job_id);
                self.shared.jobs.store(self.jobs.len(), Ordering::Release);
                Err(e)
            }
        };
        let (status, error) = match status {
            Ok(()) => (proto::JobStatus::JsRunning, String::new()),
            Err(e) => (proto::JobStatus::JsFailed, e.to_string()),
        };
        send(
            socket,
            ToServer::UpdateJob(proto::UpdateJobStatus {
                job_id: started.job_id,
                status: status as i32,
                error,
            }),
        )
        .await?;
        self.report_status(socket).await
    }

    /// Reports jobs whose session has stopped as done.
    async fn sweep(&mut self, socket: &mut WebSocket) -> Result<()> {
        let lapsed = self.jobs.len();
        self.jobs
            .retain(|_, job| job.reserved.is_none_or(|at| at.elapsed() < RESERVATION));
        let lapsed = lapsed != self.jobs.len();
        let over: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.session.as_ref().is_some_and(|s| s.is_over()))
            .map(|(id, _)| id.clone())
            .collect();
        if over.is_empty() {
            self.shared.jobs.store(self.jobs.len(), Ordering::Release);
            return if lapsed {
                self.report_status(socket).await
            } else {
                Ok(())
            };
        }
        for job_id in over {
            self.jobs.remove(&job_id);
            send(
                socket,
                ToServer::UpdateJob(proto::UpdateJobStatus {
                    job_id,
                    status: proto::JobStatus::JsSuccess as i32,
                    error: String::new(),
                }),
            )
            .await?;
        }
        self.shared.jobs.store(self.jobs.len(), Ordering::Release);
        self.report_status(socket).await
    }

    /// `UpdateWorkerStatus`: load, jobs, and whether the worker takes more.
    async fn report_status(&mut self, socket: &mut WebSocket) -> Result<()> {
        let load = self.load.sample();
        let jobs = self.jobs.len() as u32;
        let draining = self.shared.draining.load(Ordering::Acquire);
        let full = draining
            || (self.worker.max_jobs > 0 && jobs >= self.worker.max_jobs)
            || load >= self.worker.load_threshold;
        let status = if full {
            proto::WorkerStatus::WsFull
        } else {
            proto::WorkerStatus::WsAvailable
        };
        self.seq += 1;
        send(
            socket,
            ToServer::UpdateWorker(proto::UpdateWorkerStatus {
                status: Some(status as i32),
                load,
                job_count: jobs,
                draining,
                seq: self.seq,
            }),
        )
        .await
    }
}

async fn send(socket: &mut WebSocket, message: ToServer) -> Result<()> {
    let bytes = proto::WorkerMessage {
        message: Some(message),
    }
    .encode_to_vec();
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .map_err(|e| {
            Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{NAME}: the worker connection failed: {e}"),
            )
        })
}

/// The session a job asks for (`url` and `token` from its assignment; `agent_identity` the
/// agent's identity in the room) and the dispatch information the host's hook gets with it.
pub(crate) fn job_session(
    job: &proto::Job,
    url: Option<String>,
    token: Secret,
    agent_identity: String,
) -> (SessionConfig, serde_json::Value) {
    let (room, room_sid) = job
        .room
        .as_ref()
        .map(|r| (r.name.clone(), r.sid.clone()))
        .unwrap_or_default();
    // One conversation per room instance: a room made again under its name is another.
    let conversation = (!room_sid.is_empty()).then(|| recover::conversation_id(&room_sid));
    let participant = job
        .participant
        .as_ref()
        .map(|p| p.identity.clone())
        .unwrap_or_default();
    // Who the agent is in the room: a worker bringing the room back after this one died
    // removes that participant (the server keeps a vanished one for a while).
    let config = SessionConfig {
        metadata: json!({ recover::AGENT_IDENTITY: agent_identity }),
        user_id: participant.clone(),
        transport: TRANSPORT.to_owned(),
        room: Some(room.clone()),
        conversation_id: conversation.clone(),
        connection_url: url,
        connection_token: Some(token),
        ..SessionConfig::default()
    };
    let info = json!({
        "source": "livekit-dispatch",
        "room": room,
        "participant": participant,
        "job_id": job.id,
        "dispatch_id": job.dispatch_id,
        "agent_name": job.agent_name,
        "metadata": job.metadata,
        "conversation_id": conversation,
    });
    (config, info)
}

/// The next server message (WebSocket pings are answered by the socket itself).
async fn next_message(socket: &mut WebSocket) -> Result<FromServer> {
    loop {
        let frame = socket.next().await.ok_or_else(|| {
            Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{NAME}: the server closed the worker connection"),
            )
        })?;
        let bytes = match frame {
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Close(close)) => {
                return Err(Error::new(
                    VbStatus::VB_ERR_CONNECTION_FAILED,
                    format!(
                        "{NAME}: the server closed the worker connection{}",
                        close.map(|c| format!(": {}", c.reason)).unwrap_or_default()
                    ),
                ));
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(Error::new(
                    VbStatus::VB_ERR_CONNECTION_FAILED,
                    format!("{NAME}: the worker connection failed: {e}"),
                ));
            }
        };
        if let Some(message) = decode_server_message(&bytes)? {
            return Ok(message);
        }
    }
}

/// Decodes one binary message of the worker connection; `None` for a message of a newer protocol
/// than this client knows, `VB_ERR_PROVIDER` for bytes that are not a `ServerMessage`.
pub(crate) fn decode_server_message(bytes: &[u8]) -> Result<Option<FromServer>> {
    let message = proto::ServerMessage::decode(bytes).map_err(|e| {
        Error::new(
            VbStatus::VB_ERR_PROVIDER,
            format!("{NAME}: a worker message did not parse: {e}"),
        )
    })?;
    Ok(message.message)
}

fn kind(message: &FromServer) -> &'static str {
    match message {
        FromServer::Register(_) => "a registration",
        FromServer::Availability(_) => "an availability request",
        FromServer::Assignment(_) => "a job assignment",
        FromServer::Termination(_) => "a job termination",
        FromServer::Pong(_) => "a pong",
        FromServer::GoAway(_) => "a go-away",
    }
}
