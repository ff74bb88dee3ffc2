//! Mode "worker": inference on a thread of its own, one per context
//! ([`crate::NeuralNodes`]), fed through lock-free single-producer,
//! single-consumer queues (rtrb). The render thread only pushes and pops:
//! it never waits for the inference thread in real time, and the inference
//! thread never waits for it.
//!
//! The machinery is public so that any Rust processor can hold a
//! `byob-tensor` session (or any slow computation) in mode "worker":
//! implement [`Offload`], hand it to [`crate::NeuralNodes::offload`], and
//! drive the [`WorkerQueue`] it returns from `process`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How the context's quanta are paced, which decides what a late result
/// does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// An offline render: quanta come as fast as they can be rendered, so
    /// the render thread waits for a result that is due (never a missed
    /// deadline: the output is what real time gives when every deadline is
    /// met, the same in every run).
    #[default]
    Offline,
    /// A device (or anything pacing quanta like one): the render thread
    /// never waits; a result not back when due is a missed deadline.
    RealTime,
}

/// Work that a processor sends to the inference thread.
pub trait Offload: Send + 'static {
    /// What travels to the inference thread and back: the input, and room
    /// for the output (moved through the queues, never copied or
    /// allocated on the way).
    type Job: Send + 'static;

    /// Runs one job on the inference thread. An error ends the node that
    /// sent it (its processorerror).
    fn run(&mut self, job: &mut Self::Job) -> Result<(), String>;
}

/// A job back from the inference thread.
struct Done<J> {
    job: J,
    result: Result<(), String>,
}

/// What the inference thread serves: one node's queues.
trait Serve: Send {
    /// Runs every job waiting; whether there was any.
    fn serve(&mut self) -> bool;
    /// Whether the node is gone (nothing more will come).
    fn abandoned(&self) -> bool;
}

struct Task<O: Offload> {
    offload: O,
    jobs: rtrb::Consumer<O::Job>,
    results: rtrb::Producer<Done<O::Job>>,
}

impl<O: Offload> Serve for Task<O> {
    fn serve(&mut self) -> bool {
        let mut served = false;
        while let Ok(mut job) = self.jobs.pop() {
            if self.results.is_abandoned() {
                // The node is gone: its backlog is dropped, not run.
                continue;
            }
            // A panicking job fails its node, not the thread that serves
            // the context's other nodes.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.offload.run(&mut job)))
                .unwrap_or_else(|payload| Err(format!("the inference panicked: {}", payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("no message"))));
            // The results queue holds every job the node owns: never full.
            let _ = self.results.push(Done { job, result });
            served = true;
        }
        served
    }

    fn abandoned(&self) -> bool {
        self.jobs.is_abandoned() && self.jobs.is_empty()
    }
}

/// How long the inference thread sleeps when no job is waiting: the render
/// thread may not wake it (a wake-up is a system call), so it polls.
const IDLE_POLL: Duration = Duration::from_micros(200);

/// Nodes added to an inference thread, not yet taken by it.
type Incoming = Mutex<Vec<Box<dyn Serve>>>;

/// The inference thread of one context; it ends when its context and every
/// node it serves are gone.
pub(crate) struct InferenceThread {
    incoming: Arc<Incoming>,
    /// Held while the context may still add nodes.
    _context: Arc<()>,
}

impl InferenceThread {
    pub(crate) fn spawn(clock: Clock) -> std::io::Result<Self> {
        let (incoming, context): (Arc<Incoming>, Arc<()>) = Default::default();
        let (shared, weak) = (incoming.clone(), Arc::downgrade(&context));
        std::thread::Builder::new().name("byob-inference".into()).spawn(move || serve_until_gone(&shared, &weak, clock))?;
        Ok(Self { incoming, _context: context })
    }

    fn add(&self, task: Box<dyn Serve>) {
        self.incoming.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
}

fn serve_until_gone(incoming: &Incoming, context: &Weak<()>, clock: Clock) {
    if clock == Clock::RealTime {
        promote_to_real_time();
    }
    let mut tasks: Vec<Box<dyn Serve>> = Vec::new();
    loop {
        // Checked before taking new tasks: a node added just before its
        // context went is still taken.
        let context_gone = context.strong_count() == 0;
        if let Ok(mut new) = incoming.try_lock() {
            tasks.append(&mut new);
        }
        let mut served = false;
        for task in &mut tasks {
            served |= task.serve();
        }
        tasks.retain(|task| !task.abandoned());
        if context_gone && tasks.is_empty() && incoming.lock().map_or(true, |new| new.is_empty()) {
            return;
        }
        if !served {
            std::thread::sleep(IDLE_POLL);
        }
    }
}

/// Real-time scheduling (SCHED_FIFO) where the system allows it, at a low
/// real-time priority: above every ordinary thread, below an audio
/// callback's. Where it is refused (no privilege), the thread runs at
/// normal priority.
fn promote_to_real_time() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    #[cfg(unix)]
    if let Ok(value) = ThreadPriorityValue::try_from(10u8) {
        use thread_priority::{RealtimeThreadSchedulePolicy, ThreadSchedulePolicy};
        let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        let _ = thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), ThreadPriority::Crossplatform(value), fifo);
    }
    #[cfg(not(unix))]
    let _ = thread_priority::set_current_thread_priority(ThreadPriority::Max);
}

/// The render thread's side of an offloaded computation: jobs go out with
/// the sample position at which their result is due, and come back in
/// order. Positions are the processor's own count (samples of the
/// context, say). Everything is made at creation; nothing here allocates,
/// locks or makes a system call in real time.
pub struct WorkerQueue<J> {
    jobs: rtrb::Producer<J>,
    results: rtrb::Consumer<Done<J>>,
    clock: Clock,
    /// Jobs not in use, to fill and submit.
    free: Vec<J>,
    /// Due positions of the jobs out on the inference thread, in order.
    pending: VecDeque<u64>,
    /// How many of `pending`'s first entries were already counted missed.
    late: usize,
    /// Jobs back, with their due positions, not yet in effect.
    arrived: VecDeque<(u64, J)>,
    /// The result in effect, and the position it was due at.
    current: Option<(u64, J)>,
    missed: u64,
}

impl<J: Send + 'static> WorkerQueue<J> {
    fn new(jobs: rtrb::Producer<J>, results: rtrb::Consumer<Done<J>>, clock: Clock, pool: Vec<J>) -> Self {
        let n = pool.len();
        Self { jobs, results, clock, free: pool, pending: VecDeque::with_capacity(n), late: 0, arrived: VecDeque::with_capacity(n), current: None, missed: 0 }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A job to fill, if one is free (none: the inference thread is behind;
    /// skip this work, and count it as missed with [`Self::skip`]).
    pub fn take_free(&mut self) -> Option<J> {
        self.free.pop()
    }

    /// Gives back a job that was taken and not submitted.
    pub fn give_back(&mut self, job: J) {
        self.free.push(job);
    }

    /// Sends `job` to the inference thread; its result is due at `due`.
    /// Positions must not decrease from one job to the next.
    pub fn submit(&mut self, job: J, due: u64) {
        match self.jobs.push(job) {
            Ok(()) => self.pending.push_back(due),
            // Never full: it holds every job there is.
            Err(rtrb::PushError::Full(job)) => self.free.push(job),
        }
    }

    /// Counts work that was never submitted as a missed deadline.
    pub fn skip(&mut self) {
        self.missed += 1;
    }

    /// Deadlines missed so far: results not back when due, and skipped work.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    fn collect(&mut self) -> Result<(), String> {
        while let Ok(Done { job, result }) = self.results.pop() {
            let due = self.pending.pop_front().expect("every result was submitted");
            self.late = self.late.saturating_sub(1);
            self.arrived.push_back((due, job));
            result?;
        }
        if self.results.is_abandoned() && !self.pending.is_empty() {
            return Err("the inference thread stopped".into());
        }
        Ok(())
    }

    /// Brings into effect every result due at or before `position` (the
    /// newest one that is back). Offline, waits for each; in real time, a
    /// result not back is counted missed, and the one before stays in
    /// effect. Fails with the inference thread's error.
    pub fn advance(&mut self, position: u64) -> Result<(), String> {
        self.collect()?;
        if self.clock == Clock::Offline {
            while self.pending.front().is_some_and(|&due| due <= position) {
                std::thread::sleep(Duration::from_micros(20));
                self.collect()?;
            }
        }
        while self.pending.get(self.late).is_some_and(|&due| due <= position) {
            self.late += 1;
            self.missed += 1;
        }
        while self.arrived.front().is_some_and(|(due, _)| *due <= position) {
            let next = self.arrived.pop_front().expect("checked");
            if let Some((_, old)) = self.current.replace(next) {
                self.free.push(old);
            }
        }
        Ok(())
    }

    /// The result in effect and the position it was due at.
    pub fn current(&self) -> Option<(u64, &J)> {
        self.current.as_ref().map(|(due, job)| (*due, job))
    }

    /// The next position after the last [`Self::advance`] at which another
    /// result is due.
    pub fn next_due(&self) -> Option<u64> {
        self.arrived.front().map(|(due, _)| *due).or_else(|| self.pending.get(self.late).copied())
    }
}

impl<J> Drop for WorkerQueue<J> {
    /// Offline, every job sent is run before its node goes, so that what
    /// a render counts is the same in every run; in real time, nothing
    /// waits.
    fn drop(&mut self) {
        if self.clock != Clock::Offline {
            return;
        }
        while !self.pending.is_empty() && !self.results.is_abandoned() {
            match self.results.pop() {
                Ok(_) => drop(self.pending.pop_front()),
                Err(_) => std::thread::sleep(Duration::from_micros(20)),
            }
        }
    }
}

/// Starts serving `offload` on `thread`: `pool` is every job the node will
/// ever use (how many may be out at once).
pub(crate) fn attach<O: Offload>(thread: &InferenceThread, clock: Clock, offload: O, pool: Vec<O::Job>) -> WorkerQueue<O::Job> {
    let (jobs_in, jobs_out) = rtrb::RingBuffer::new(pool.len().max(1));
    let (results_in, results_out) = rtrb::RingBuffer::new(pool.len().max(1));
    thread.add(Box::new(Task { offload, jobs: jobs_out, results: results_in }));
    WorkerQueue::new(jobs_in, results_out, clock, pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles a number once the test lets it (a gate that is never
    /// opened stands for an inference slower than any deadline).
    struct Doubler(Option<std::sync::mpsc::Receiver<()>>);

    impl Offload for Doubler {
        type Job = (u64, u64);
        fn run(&mut self, job: &mut (u64, u64)) -> Result<(), String> {
            if let Some(gate) = &self.0 {
                let _ = gate.recv();
            }
            job.1 = job.0 * 2;
            Ok(())
        }
    }

    #[test]
    fn offline_results_take_effect_exactly_when_due() {
        let thread = InferenceThread::spawn(Clock::Offline).unwrap();
        let mut queue = attach(&thread, Clock::Offline, Doubler(None), vec![(0, 0); 4]);
        for k in 0..3u64 {
            let mut job = queue.take_free().unwrap();
            job.0 = k;
            queue.submit(job, 100 * (k + 1));
        }
        queue.advance(99).unwrap();
        assert!(queue.current().is_none());
        assert_eq!(queue.next_due(), Some(100));
        queue.advance(250).unwrap();
        assert_eq!(queue.current().map(|(due, job)| (due, job.1)), Some((200, 2)));
        queue.advance(300).unwrap();
        assert_eq!(queue.current().map(|(due, job)| (due, job.1)), Some((300, 4)));
        assert_eq!(queue.missed(), 0);
    }

    #[test]
    fn real_time_counts_a_late_result_and_never_waits() {
        let thread = InferenceThread::spawn(Clock::RealTime).unwrap();
        let (open, gate) = std::sync::mpsc::channel();
        let mut queue = attach(&thread, Clock::RealTime, Doubler(Some(gate)), vec![(0, 0); 2]);
        let mut job = queue.take_free().unwrap();
        job.0 = 21;
        queue.submit(job, 10);
        // The job cannot finish before the gate opens: returning at all
        // shows that `advance` does not wait for it.
        queue.advance(10).unwrap();
        assert_eq!((queue.missed(), queue.current().is_none()), (1, true));
        open.send(()).unwrap();
        while queue.current().is_none() {
            std::thread::sleep(Duration::from_millis(1));
            queue.advance(20).unwrap();
        }
        // A late result still takes effect when it comes; counted once.
        assert_eq!((queue.current().map(|(_, job)| job.1), queue.missed()), (Some(42), 1));
    }

    /// Fails every job: with an error, or by panicking.
    struct Failing {
        panics: bool,
    }

    impl Offload for Failing {
        type Job = u8;
        fn run(&mut self, _: &mut u8) -> Result<(), String> {
            if self.panics {
                panic!("boom")
            }
            Err("no".into())
        }
    }

    /// The first failure of `failing`'s only job, as the render side sees it.
    fn first_failure(thread: &InferenceThread, failing: Failing) -> Result<(), String> {
        let mut queue = attach(thread, Clock::Offline, failing, vec![0]);
        let job = queue.take_free().unwrap();
        queue.submit(job, 0);
        queue.advance(0)
    }

    #[test]
    fn an_error_reaches_the_render_side() {
        let thread = InferenceThread::spawn(Clock::Offline).unwrap();
        assert_eq!(first_failure(&thread, Failing { panics: false }), Err("no".to_string()));
    }

    #[test]
    fn a_panicking_job_fails_its_node_and_the_thread_serves_on() {
        let thread = InferenceThread::spawn(Clock::Offline).unwrap();
        assert_eq!(first_failure(&thread, Failing { panics: true }), Err("the inference panicked: boom".to_string()));
        let mut queue = attach(&thread, Clock::Offline, Doubler(None), vec![(21, 0)]);
        let job = queue.take_free().unwrap();
        queue.submit(job, 5);
        queue.advance(5).unwrap();
        assert_eq!(queue.current().map(|(_, job)| job.1), Some(42));
    }
}
