//! Working arrays that kernels keep per thread between calls, so that a
//! session's steady-state runs allocate none: each grows to the largest
//! size a thread has needed and stays. A [`Scratch`] owns a set of them
//! and lends it to whichever thread runs, so that a run handle made on one
//! thread and run on another (an audio device's) brings the arrays its
//! first run sized.

use std::cell::RefCell;
use std::thread::LocalKey;

thread_local! {
    /// im2col matrices and other per-kernel working space.
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A thin product's right-hand side, transposed.
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` values of this thread's `key` buffer (a fresh one if
/// it is in use further up this thread's stack, as when a pool thread
/// steals work). The values are unspecified: `f` writes what it reads. The
/// buffer only ever grows, so kernels of different sizes taking turns do
/// not fill it anew each time it had shrunk.
fn with<R>(key: &'static LocalKey<RefCell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// See [`with`]: the buffer for im2col matrices and kernels' working space.
pub(crate) fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with(&COLUMNS, len, f)
}

/// See [`with`]: the buffer for a transposed right-hand side.
pub(crate) fn with_transposed<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with(&TRANSPOSED, len, f)
}

/// Working arrays of one owner (a run handle), lent to the running thread.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    columns: Vec<f32>,
    transposed: Vec<f32>,
}

impl Scratch {
    /// Runs `f` with these arrays as the thread's own (the thread's are
    /// set aside meanwhile, and what `f` grew stays here). Swapping moves
    /// the vectors' headers: nothing is allocated or copied.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // Each array is swapped in only if the thread's is not in use (it
        // is not, outside a kernel), and then swapped back.
        let swap = |mine: &mut Vec<f32>, key: &'static LocalKey<RefCell<Vec<f32>>>| key.with(|cell| cell.try_borrow_mut().map(|mut theirs| std::mem::swap(&mut *theirs, mine)).is_ok());
        let lent = [swap(&mut self.columns, &COLUMNS), swap(&mut self.transposed, &TRANSPOSED)];
        let result = f();
        if lent[0] {
            swap(&mut self.columns, &COLUMNS);
        }
        if lent[1] {
            swap(&mut self.transposed, &TRANSPOSED);
        }
        result
    }
}
