//! Two small waiting primitives for futures that must not hold a thread:
//! an async lock (runs of one executable take turns, across the await for
//! their read-back) and a one-shot signal (a buffer mapping completed, set
//! from the polling thread). `std::sync::MutexGuard` cannot be held across
//! an await in a `Send` future, and the crate forbids the unsafe code a
//! data-carrying async mutex needs, so the lock guards no data: what it
//! protects sits behind ordinary mutexes that are locked only briefly.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct LockState {
    held: bool,
    waiters: Vec<Waker>,
}

/// A lock taken by awaiting [`AsyncLock::lock`]; released when the guard
/// drops, including when the future holding it is dropped mid-way.
#[derive(Default)]
pub(crate) struct AsyncLock {
    state: Mutex<LockState>,
}

impl AsyncLock {
    pub fn lock(&self) -> Acquire<'_> {
        Acquire { lock: self }
    }
}

pub(crate) struct Acquire<'a> {
    lock: &'a AsyncLock,
}

impl<'a> Future for Acquire<'a> {
    type Output = AsyncLockGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.lock.state);
        if !state.held {
            state.held = true;
            return Poll::Ready(AsyncLockGuard { lock: self.lock });
        }
        if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

pub(crate) struct AsyncLockGuard<'a> {
    lock: &'a AsyncLock,
}

impl Drop for AsyncLockGuard<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut state = lock(&self.lock.state);
            state.held = false;
            std::mem::take(&mut state.waiters)
        };
        // Every waiter retries: one that was dropped while waiting cannot
        // swallow the wake-up of the others.
        waiters.into_iter().for_each(Waker::wake);
    }
}

#[derive(Default)]
struct SignalState {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

/// A result set once (from any thread) and awaited by reference.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
}

impl Signal {
    pub fn set(&self, result: Result<(), String>) {
        let waker = {
            let mut state = lock(&self.state);
            state.result = Some(result);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self }
    }
}

pub(crate) struct Wait<'a> {
    signal: &'a Signal,
}

impl Future for Wait<'_> {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.signal.state);
        match &state.result {
            Some(result) => Poll::Ready(result.clone()),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_lock_serialises_threads() {
        let lock = Arc::new(AsyncLock::default());
        let inside = Arc::new(Mutex::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _guard = pollster::block_on(lock.lock());
                        *inside.lock().unwrap() += 1;
                        assert_eq!(*inside.lock().unwrap(), 1, "two holders at once");
                        std::thread::yield_now();
                        *inside.lock().unwrap() -= 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn a_signal_wakes_its_waiter() {
        let signal = Arc::new(Signal::default());
        let setter = Arc::clone(&signal);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            setter.set(Err("lost".into()));
        });
        assert_eq!(pollster::block_on(signal.wait()), Err("lost".into()));
        thread.join().unwrap();
    }
}
