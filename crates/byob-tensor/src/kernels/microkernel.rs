//! byob's own single-precision GEMM on a right operand packed once (the
//! weights of Conv, Gemm and MatMul, packed at session creation by
//! the packing pass, `passes::pack`), and the other loops that need SIMD instructions chosen
//! at run time. Every `unsafe` block of the CPU kernels lives here.
//!
//! C [m × n] = A [m × k] · B [k × n] (+ bias per column, + a residual
//! matrix laid out as C, then Relu: ResNet's shortcut and activation in the
//! convolution's store), with A
//! read in place through a row stride (an NHWC activation *is* the left
//! operand of a pointwise convolution) and B packed into column panels of
//! [`NR`] = 32 columns, each `k × 32` contiguous and zero-padded past `n`.
//! The inner kernel keeps a tile of `rows × 32` sums in registers (12 rows,
//! 24 zmm accumulators, with AVX-512; 6 rows × 16 columns, twice per panel,
//! with AVX2 and FMA; 4 rows in portable code otherwise), broadcasting one
//! element of A per row against two vectors of the panel per step of k, as
//! ONNX Runtime's MLAS does. The packed panel stays in cache while the tiles
//! of a block of rows stream past it; blocks of rows are sized to share the
//! L2 cache with the panel. Work splits over blocks of rows, and over
//! panels too when there are too few rows to keep every thread busy.
//!
//! Callers check shapes; [`gemm_packed`] asserts that the slices cover the
//! matrices they describe (an internal invariant), after which the kernels
//! read and write through raw pointers.

use rayon::prelude::*;

/// Columns per packed panel of B.
pub(crate) const NR: usize = 32;

/// What the kernel does to each sum before storing it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Epilogue<'a> {
    /// Added per column (`n` values).
    pub bias: Option<&'a [f32]>,
    /// Added element by element.
    pub residual: Residual<'a>,
    /// Negative results become 0 (after the additions).
    pub relu: bool,
}

/// A matrix added to the product before the activation (ResNet's
/// shortcut).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Residual<'a> {
    #[default]
    None,
    /// Laid out as C (same stride, same first element), read where C is
    /// written.
    Matrix(&'a [f32]),
    /// Already in C: each value is read, then overwritten by the result
    /// (the session lends the shortcut's buffer as the output once nothing
    /// else reads it, saving a matrix of memory traffic).
    InC,
}

/// The left operand A [m × k], read in place: row q is `runs.len()` runs
/// of `run_len` values, run s at `data[offset(q) + runs[s]..]`, where
/// `offset(q) = (q / per_line)·line_stride + (q % per_line)·row_stride`.
///
/// A plain matrix is one run of k values per row ([`Lhs::matrix`]). A
/// convolution's windows, read where they lie in a channels-last image
/// (with its pads made real), are one run of kw·C values per kernel row:
/// output pixels sx·C values apart along a line of output, lines sy rows of
/// the image apart; no im2col copy.
#[derive(Clone, Copy)]
pub(crate) struct Lhs<'a> {
    pub data: &'a [f32],
    pub runs: &'a [usize],
    pub run_len: usize,
    pub row_stride: usize,
    /// Rows per line (at least 1).
    pub per_line: usize,
    pub line_stride: usize,
}

impl<'a> Lhs<'a> {
    /// The matrix `a [m × k]`, rows `lda` values apart.
    pub fn matrix(a: &'a [f32], lda: usize, k: usize) -> Self {
        assert!(lda >= k, "gemm_packed: stride lda {lda} < k {k}");
        Lhs { data: a, runs: &[0], run_len: k, row_stride: lda, per_line: usize::MAX, line_stride: 0 }
    }

    fn k(&self) -> usize {
        self.runs.len() * self.run_len
    }

    /// At least the largest offset of the first `rows` rows.
    fn last_offset(&self, rows: usize) -> usize {
        ((rows - 1) / self.per_line) * self.line_stride + (self.per_line.min(rows) - 1) * self.row_stride
    }

    /// Values the first `rows` rows read, at most: rows × k, or less where
    /// they overlap (windows): the span of addresses they lie in.
    fn footprint(&self, rows: usize) -> usize {
        let span = self.last_offset(rows) + self.runs.iter().max().unwrap_or(&0) + self.run_len;
        span.min(rows * self.k())
    }
}

/// A tile's rows of A: row i is the runs `rows[i] + runs[s]..+ len`, one
/// after the other (k = runs × len).
#[derive(Clone, Copy)]
struct ARows<'a> {
    rows: &'a [*const f32],
    runs: &'a [usize],
    len: usize,
}

/// Most runs a row of A may be pieced from (kernel rows of a window).
pub(crate) const MAX_RUNS: usize = 16;

/// The epilogue as a tile sees it: `residual` points at the tile's first
/// element of the residual (at C's stride), or is null.
#[derive(Clone, Copy)]
struct Tail<'a> {
    bias: Option<&'a [f32]>,
    residual: *const f32,
    relu: bool,
}

/// Which inner kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

impl Kernel {
    /// The fastest kernel this processor runs (detected once per call site
    /// by std's cached feature test).
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// The kernels this processor can run (for tests).
    #[cfg(test)]
    pub fn available() -> Vec<Kernel> {
        let best = Kernel::best();
        [Kernel::Avx512, Kernel::Avx2, Kernel::Portable].into_iter().filter(|&k| k == Kernel::Portable || best == Kernel::Avx512 || k == best).collect()
    }

    /// Rows per tile.
    const fn rows(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 => 6,
            Kernel::Portable => 4,
        }
    }
}

/// Length of `B [k × n]` once packed.
pub(crate) fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Packs `B [k × n]`, whose element (p, j) is `b(p, j)`, into panels.
pub(crate) fn pack(k: usize, n: usize, b: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let mut packed = vec![0.0; packed_len(k, n)];
    for (panel, chunk) in packed.chunks_mut((k * NR).max(1)).enumerate() {
        for (p, row) in chunk.chunks_mut(NR).enumerate() {
            for (jj, v) in row.iter_mut().enumerate() {
                let j = panel * NR + jj;
                if j < n {
                    *v = b(p, j);
                }
            }
        }
    }
    packed
}

/// The output pointer, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks given an `Out` write disjoint (row, column) ranges of the
// matrix it points to (see `gemm_packed`), and the borrow it came from
// outlives them (rayon's scope joins before `gemm_packed` returns).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Most rows in a block (16 of the tallest tiles).
const MAX_BLOCK_ROWS: usize = 16 * Kernel::Avx512.rows();

/// Bytes of A a block of rows may take, so that it shares L2 with a panel.
const BLOCK_BYTES: usize = 512 * 1024;

/// `c[i·ldc + j] = epilogue(Σ_p A[i][p] · B[p][j])` for i < m, j < n,
/// A read in place as `lhs` describes it, B packed by [`pack`]; on
/// `pool`'s threads when given.
///
/// # Panics
/// When a slice is shorter than the matrix it holds, or A has no runs or
/// more than [`MAX_RUNS`] (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(m: usize, n: usize, lhs: Lhs, b: &[f32], c: &mut [f32], ldc: usize, epilogue: Epilogue, pool: Option<&rayon::ThreadPool>) {
    gemm_packed_with(Kernel::best(), m, n, lhs, b, c, ldc, epilogue, pool)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed_with(kernel: Kernel, m: usize, n: usize, lhs: Lhs, b: &[f32], c: &mut [f32], ldc: usize, epilogue: Epilogue, pool: Option<&rayon::ThreadPool>) {
    if m == 0 || n == 0 {
        return;
    }
    let k = lhs.k();
    assert!((1..=MAX_RUNS).contains(&lhs.runs.len()) && lhs.per_line > 0, "gemm_packed: {} runs, {} rows per line", lhs.runs.len(), lhs.per_line);
    let last_row = lhs.last_offset(m);
    assert!(k == 0 || lhs.runs.iter().all(|&r| last_row + r + lhs.run_len <= lhs.data.len()), "gemm_packed: a run of A past its {} elements", lhs.data.len());
    check_operands(m, n, k, b, c, ldc, &epilogue);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let (row_blocks, panels_per_task) = partition(m, panels, &lhs, kernel.rows(), threads);
    let block = m.div_ceil(row_blocks);
    let tasks = row_blocks * panels.div_ceil(panels_per_task);
    let out = Out(c.as_mut_ptr());
    let task = |t: usize| {
        let (rb, pc) = (t % row_blocks, t / row_blocks);
        let rows = rb * block..((rb + 1) * block).min(m);
        let panel_range = pc * panels_per_task..((pc + 1) * panels_per_task).min(panels);
        // SAFETY: `rows` and `panel_range` are within the bounds asserted
        // above, and tasks cover disjoint (row block, panel chunk) pairs, so
        // their writes to `out` never overlap; `c` is borrowed mutably for
        // this whole call, so nothing else reads or writes it meanwhile.
        unsafe { run_block(kernel, rows, panel_range, n, lhs, b, out, ldc, epilogue) };
    };
    match pool {
        Some(p) if threads > 1 && tasks > 1 && m * n * k >= 1 << 16 => p.install(|| (0..tasks).into_par_iter().for_each(task)),
        _ => (0..tasks).for_each(task),
    }
}

/// Asserts that B, C and the epilogue's slices cover an m × n product over
/// k steps.
#[allow(clippy::too_many_arguments)]
fn check_operands(m: usize, n: usize, k: usize, b: &[f32], c: &[f32], ldc: usize, epilogue: &Epilogue) {
    assert!(ldc >= n, "gemm: stride ldc {ldc} < n {n}");
    assert!(b.len() >= packed_len(k, n), "gemm: packed B has {} elements for {k}×{n}", b.len());
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C has {} elements for {m}×{n} at stride {ldc}", c.len());
    assert!(epilogue.bias.is_none_or(|b| b.len() >= n), "gemm: bias shorter than n = {n}");
    if let Residual::Matrix(r) = epilogue.residual {
        assert!(r.len() >= (m - 1) * ldc + n, "gemm: the residual is smaller than C");
    }
}

/// How a product of `m` rows of A by `panels` panels splits into tasks:
/// (blocks of rows, panels per task).
///
/// Blocks of rows as large as L2 allows, evened out; then enough tasks for
/// every thread (a few each, to even out), splitting panels only when the
/// blocks of rows alone do not give that many (few rows: each panel is
/// then read once, by one thread). Where that leaves a thread idle for a
/// while (5 blocks of 40 rows on 2 threads, the last round half empty),
/// the fewest blocks of rows, up to twice as many, whose tasks cut in
/// panels finish within 2% of the soonest.
fn partition(m: usize, panels: usize, lhs: &Lhs, mr: usize, threads: usize) -> (usize, usize) {
    let most = (1..=MAX_BLOCK_ROWS / mr).rev().map(|tiles| tiles * mr).find(|&rows| lhs.footprint(rows) * 4 <= BLOCK_BYTES).unwrap_or(mr);
    let row_blocks = m.div_ceil(most);
    let row_blocks = if row_blocks < 2 * threads && m >= 2 * threads * 4 * mr {
        2 * threads
    } else if row_blocks > threads && m >= row_blocks.next_multiple_of(threads) * 4 * mr {
        // A whole number of rounds (5 blocks on 2 threads left one idle
        // for a sixth of the time).
        row_blocks.next_multiple_of(threads)
    } else {
        row_blocks
    };
    let chunk = if row_blocks < 2 * threads { balanced_chunk(panels, row_blocks, threads) } else { panels };
    // Rows × panels that the busiest thread multiplies.
    let makespan = |(blocks, chunk): (usize, usize)| (blocks * panels.div_ceil(chunk)).div_ceil(threads) * m.div_ceil(blocks) * chunk;
    let ideal = (m * panels).div_ceil(threads);
    if makespan((row_blocks, chunk)) * 100 <= ideal * 104 {
        return (row_blocks, chunk);
    }
    let candidates = || (row_blocks..=(2 * row_blocks).min(m)).flat_map(|blocks| (1..=panels).map(move |chunk| (blocks, chunk)));
    let soonest = candidates().map(makespan).min().unwrap_or(ideal);
    candidates().find(|&c| makespan(c) * 100 <= soonest * 102).unwrap_or((row_blocks, chunk))
}

/// Panels per task when `row_blocks` blocks of rows are too few for
/// `threads`: the chunk that finishes soonest, tasks taken in rounds of
/// `threads` (6 panels on 2 threads: 3 each, not 2 + 2 + 2 in two rounds),
/// the smaller on ties.
fn balanced_chunk(panels: usize, row_blocks: usize, threads: usize) -> usize {
    (1..=panels.max(1)).min_by_key(|&chunk| (row_blocks * panels.div_ceil(chunk)).div_ceil(threads) * chunk).unwrap_or(1)
}

/// Splits `rows` into tiles of at most `mr` rows, as even as possible (64
/// rows in tiles of 12: 11, 11, 11, 11, 10, 10 rather than 12 × 5 + 4).
fn tiles(rows: std::ops::Range<usize>, mr: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let len = rows.len();
    let count = len.div_ceil(mr).max(1);
    (0..count).map(move |t| rows.start + t * len / count..rows.start + (t + 1) * len / count)
}

/// One block of rows times a range of panels. A is read in place: copying
/// tiles of it step-major (as BLIS does) measured slower here.
///
/// # Safety
/// The rows and panels lie inside the matrices `gemm_packed` checked, and
/// no other thread writes the same part of `out` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(kernel: Kernel, rows: std::ops::Range<usize>, panels: std::ops::Range<usize>, n: usize, lhs: Lhs, b: &[f32], out: Out, ldc: usize, epilogue: Epilogue) {
    let (mr, k) = (kernel.rows(), lhs.k());
    // Where each row of the block starts, found once for every panel.
    let mut row_ptrs = [std::ptr::null(); MAX_BLOCK_ROWS];
    let (mut line, mut along) = (rows.start / lhs.per_line, rows.start % lhs.per_line);
    for ptr in &mut row_ptrs[..rows.len()] {
        *ptr = lhs.data.as_ptr().wrapping_add(line * lhs.line_stride + along * lhs.row_stride);
        along += 1;
        if along == lhs.per_line {
            (line, along) = (line + 1, 0);
        }
    }
    // The residual's first element, laid out as C, or null. In C, each
    // tile reads the values of its part before it writes them (row by
    // row), and no other task touches that part (the caller's contract).
    let residual: *const f32 = match epilogue.residual {
        Residual::None => std::ptr::null(),
        Residual::Matrix(res) => res.as_ptr(),
        Residual::InC => out.0,
    };
    for panel in panels {
        let j = panel * NR;
        let cols = (n - j).min(NR);
        let bias = epilogue.bias.map(|b| &b[j..j + cols]);
        let bp = &b[panel * k * NR..][..k * NR];
        let mut panel_tiles = tiles(rows.clone(), mr).peekable();
        while let Some(tile) = panel_tiles.next() {
            if let (false, Some(next)) = (residual.is_null(), panel_tiles.peek()) {
                prefetch_rows(residual, next.clone(), ldc, j);
            }
            let (i, r) = (tile.start, tile.len());
            let rows_of_a = ARows { rows: &row_ptrs[i - rows.start..][..r], runs: lhs.runs, len: lhs.run_len };
            let tail = Tail { bias, residual: Tail::offset(residual, i * ldc + j), relu: epilogue.relu };
            // SAFETY: rows i..i+r < m and columns j..j+cols ≤ n lie inside
            // C and the residual, and each row's runs inside A (asserted by
            // gemm_packed); `bp` holds this panel's k·NR values.
            unsafe { run_tile(kernel, r, rows_of_a, bp.as_ptr(), out.0.add(i * ldc + j), ldc, cols, tail) };
        }
    }
}

/// Asks for the cache lines of rows `rows`, columns `j..j + NR`, of the
/// residual (laid out as C) that the next tile will add: while the current
/// tile computes, they come from L3, which the hardware's prefetchers do
/// not do for rows a whole row of C apart, and a load that misses holds
/// the tile's stores up (ResNet50 2% faster). Prefetching where tiles only
/// store (their misses wait in the store buffer) measured 3% slower on
/// SqueezeNet, whose outputs mostly stay in L2.
#[inline(always)]
fn prefetch_rows(c: *const f32, rows: std::ops::Range<usize>, ldc: usize, j: usize) {
    #[cfg(target_arch = "x86_64")]
    for row in rows {
        let line = c.wrapping_add(row * ldc + j);
        for half in [line, line.wrapping_add(NR / 2)] {
            // SAFETY: a prefetch is a hint: it reads nothing the program
            // sees and never faults, whatever the address.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(half.cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (c, rows, ldc, j);
}

/// One tile on `kernel`.
///
/// # Safety
/// `a` holds `rows` readable rows, `b` the panel's k·NR values, `c` has
/// `rows` rows of `cols` (≤ NR) writable values at stride `ldc`, and a
/// non-null residual as many readable ones.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(kernel: Kernel, rows: usize, a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
    // SAFETY: forwarded contract.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::tile_avx512(rows, a, b, c, ldc, cols, tail),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::tile_avx2(rows, a, b, c, ldc, cols, tail),
            _ => tile_portable(rows, a, b, c, ldc, cols, tail),
        }
    }
}

/// The portable tile: up to 4 rows × one panel.
///
/// # Safety
/// As [`run_tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable(rows: usize, a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
    let mut acc = [[0.0f32; NR]; 4];
    for (s, &run) in a.runs.iter().enumerate() {
        for p in 0..a.len {
            // SAFETY: step s·len + p < k of the panel, and row i's run s
            // has `len` readable values (the caller's contract).
            let bv: &[f32; NR] = unsafe { &*b.add((s * a.len + p) * NR).cast::<[f32; NR]>() };
            for (row, &start) in acc.iter_mut().zip(a.rows).take(rows) {
                // SAFETY: as above.
                let av = unsafe { *start.add(run + p) };
                row.iter_mut().zip(bv).for_each(|(s, &w)| *s += av * w);
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: row i < rows has `cols` writable values (the caller's contract).
        unsafe { store_row(c.add(i * ldc), row, cols, tail.row(i * ldc)) };
    }
}

impl Tail<'_> {
    /// The epilogue `offset` values further on (a row down, a half across).
    fn row(self, offset: usize) -> Self {
        Self { residual: Self::offset(self.residual, offset), ..self }
    }

    /// `residual` moved on by `offset` values, null staying null.
    fn offset(residual: *const f32, offset: usize) -> *const f32 {
        if residual.is_null() {
            residual
        } else {
            residual.wrapping_add(offset)
        }
    }
}

/// Stores the first `cols` of a row of sums with the epilogue, one value
/// at a time (the portable and AVX2 tiles).
///
/// # Safety
/// `c` points at `cols` writable values and a non-null residual at as
/// many readable ones; `sums` has at least `cols`.
#[inline(always)]
unsafe fn store_row(c: *mut f32, sums: &[f32], cols: usize, tail: Tail) {
    for (jj, &s) in sums.iter().enumerate().take(cols) {
        let mut v = s + tail.bias.map_or(0.0, |b| b[jj]);
        if !tail.residual.is_null() {
            // SAFETY: jj < cols (the caller's contract).
            v += unsafe { *tail.residual.add(jj) };
        }
        // SAFETY: jj < cols (the caller's contract).
        unsafe { *c.add(jj) = if tail.relu { v.max(0.0) } else { v } };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ARows, Tail, NR};
    use std::arch::x86_64::*;

    /// Dispatches `rows` (1..=12) to the kernel specialised for it, so that
    /// the accumulators are registers.
    ///
    /// # Safety
    /// AVX-512F is available; each of A's `rows` rows has its runs of
    /// `len` readable values; `b` holds k·NR values; `c` has `rows` rows of
    /// `cols` (≤ NR) writable values at stride `ldc`, a non-null residual
    /// as many readable ones.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_avx512(rows: usize, a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
        // A panel's last 16 columns unused (16 outputs, or the rest of
        // 1000 or of a group's 34): half the multiplications.
        let wide = cols > 16;
        macro_rules! go {
            ($($r:literal)*) => {
                match (rows, wide) {
                    // SAFETY: forwarded contract.
                    $(($r, true) => unsafe { avx512::<$r, true>(a, b, c, ldc, cols, tail) },
                    ($r, false) => unsafe { avx512::<$r, false>(a, b, c, ldc, cols, tail) },)*
                    _ => unreachable!("tile of {rows} rows"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn avx512<const R: usize, const WIDE: bool>(a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let len = a.len;
        for (s, &run) in a.runs.iter().enumerate() {
            let b = b.wrapping_add(s * len * NR);
            let rows: [*const f32; R] = std::array::from_fn(|i| a.rows[i].wrapping_add(run));
            for p in 0..len {
                // SAFETY: step s·len + p < k, so b[p·NR..p·NR + 32] is in
                // the panel, and row i's run s has `len` readable values
                // (the caller's contract).
                unsafe {
                    let b0 = _mm512_loadu_ps(b.add(p * NR));
                    let b1 = if WIDE { _mm512_loadu_ps(b.add(p * NR + 16)) } else { b0 };
                    for i in 0..R {
                        let av = _mm512_set1_ps(*rows[i].add(p));
                        lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                        if WIDE {
                            hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
                        }
                    }
                }
            }
        }
        let m0: __mmask16 = if cols >= 16 { 0xffff } else { (1u16 << cols) - 1 };
        let m1: __mmask16 = if cols >= 32 { 0xffff } else if cols > 16 { (1u16 << (cols - 16)) - 1 } else { 0 };
        let (bias0, bias1) = match tail.bias {
            // SAFETY: `bias` has `cols` values and the masks cover only those.
            Some(bias) => unsafe { (_mm512_maskz_loadu_ps(m0, bias.as_ptr()), _mm512_maskz_loadu_ps(m1, bias.as_ptr().wrapping_add(16))) },
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let zero = _mm512_setzero_ps();
        for i in 0..R {
            let (mut v0, mut v1) = (_mm512_add_ps(lo[i], bias0), _mm512_add_ps(hi[i], bias1));
            if !tail.residual.is_null() {
                // SAFETY: row i of the residual has `cols` readable values
                // and the masks load only those.
                unsafe {
                    let r = tail.residual.add(i * ldc);
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, r));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, r.wrapping_add(16)));
                }
            }
            if tail.relu {
                v0 = _mm512_max_ps(v0, zero);
                v1 = _mm512_max_ps(v1, zero);
            }
            // SAFETY: row i < R = rows; the masks store only columns < cols.
            unsafe {
                _mm512_mask_storeu_ps(c.add(i * ldc), m0, v0);
                _mm512_mask_storeu_ps(c.wrapping_add(i * ldc + 16), m1, v1);
            }
        }
    }

    /// The AVX2 tile: `rows` (1..=6) × one panel, as two halves of 16
    /// columns (12 ymm accumulators each).
    ///
    /// # Safety
    /// As [`tile_avx512`], with AVX2 and FMA available.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_avx2(rows: usize, a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
        for half in 0..2 {
            let first = half * 16;
            if cols <= first {
                break;
            }
            let tail = Tail { bias: tail.bias.map(|b| &b[first..]), ..tail.row(first) };
            macro_rules! go {
                ($($r:literal)*) => {
                    match rows {
                        // SAFETY: forwarded contract, on the half's columns.
                        $($r => unsafe { avx2::<$r>(a, b.add(first), c.add(first), ldc, cols - first, tail) },)*
                        _ => unreachable!("tile of {rows} rows"),
                    }
                };
            }
            go!(1 2 3 4 5 6)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn avx2<const R: usize>(a: ARows, b: *const f32, c: *mut f32, ldc: usize, cols: usize, tail: Tail) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let len = a.len;
        for (s, &run) in a.runs.iter().enumerate() {
            let b = b.wrapping_add(s * len * NR);
            let rows: [*const f32; R] = std::array::from_fn(|i| a.rows[i].wrapping_add(run));
            for p in 0..len {
                // SAFETY: step s·len + p < k; the half's 16 columns lie
                // inside the panel row; row i's run s has `len` values.
                unsafe {
                    let b0 = _mm256_loadu_ps(b.add(p * NR));
                    let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
                    for i in 0..R {
                        let av = _mm256_set1_ps(*rows[i].add(p));
                        lo[i] = _mm256_fmadd_ps(av, b0, lo[i]);
                        hi[i] = _mm256_fmadd_ps(av, b1, hi[i]);
                    }
                }
            }
        }
        let cols = cols.min(16);
        for i in 0..R {
            let mut sums = [0.0f32; 16];
            // SAFETY: `sums` has room for two vectors of 8.
            unsafe {
                _mm256_storeu_ps(sums.as_mut_ptr(), lo[i]);
                _mm256_storeu_ps(sums.as_mut_ptr().add(8), hi[i]);
            }
            // SAFETY: row i < rows has `cols` (≤ 16) writable values (and
            // readable ones in a non-null residual).
            unsafe { super::store_row(c.add(i * ldc), &sums, cols, tail.row(i * ldc)) };
        }
    }

    /// `Σ x[p]·y[p]` over the shorter slice, in four vectors of partial
    /// sums (one would wait on each addition's latency).
    ///
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut p = 0;
        // SAFETY (all loads): p + 16·(lane + 1) ≤ n, within both slices.
        while p + 64 <= n {
            for (lane, a) in acc.iter_mut().enumerate() {
                let o = p + 16 * lane;
                *a = unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(o)), _mm512_loadu_ps(yp.add(o)), *a) };
            }
            p += 64;
        }
        while p + 16 <= n {
            acc[0] = unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(p)), _mm512_loadu_ps(yp.add(p)), acc[0]) };
            p += 16;
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(sum) + x[p..n].iter().zip(&y[p..n]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// Four dot products of `x` with `ys`, reading `x` once for all four
    /// (a thin product's row against 4 columns: 5 loads per 4 FMAs rather
    /// than 8).
    ///
    /// # Safety
    /// AVX-512F is available; every slice of `ys` is at least as long as `x`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot4_avx512(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4] {
        let n = x.len();
        // Two sets of partial sums, so that consecutive FMAs into one
        // accumulator do not wait on each other's latency.
        let mut acc = [[_mm512_setzero_ps(); 4]; 2];
        let mut p = 0;
        // SAFETY (all loads): o + 16 ≤ n ≤ every slice's length.
        while p + 32 <= n {
            for (half, acc) in acc.iter_mut().enumerate() {
                let o = p + 16 * half;
                let a = unsafe { _mm512_loadu_ps(x.as_ptr().add(o)) };
                for (acc, y) in acc.iter_mut().zip(ys) {
                    *acc = unsafe { _mm512_fmadd_ps(a, _mm512_loadu_ps(y.as_ptr().add(o)), *acc) };
                }
            }
            p += 32;
        }
        if p + 16 <= n {
            let a = unsafe { _mm512_loadu_ps(x.as_ptr().add(p)) };
            for (acc, y) in acc[0].iter_mut().zip(ys) {
                *acc = unsafe { _mm512_fmadd_ps(a, _mm512_loadu_ps(y.as_ptr().add(p)), *acc) };
            }
            p += 16;
        }
        let mut sums = [0.0; 4];
        for (j, (sum, y)) in sums.iter_mut().zip(ys).enumerate() {
            *sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][j], acc[1][j])) + x[p..n].iter().zip(&y[p..n]).map(|(a, b)| a * b).sum::<f32>();
        }
        sums
    }

    /// [`dot4_avx512`] for AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA are available; every slice of `ys` is at least as long
    /// as `x`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_avx2(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4] {
        let n = x.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut p = 0;
        // SAFETY (all loads): p + 8 ≤ n ≤ every slice's length.
        while p + 8 <= n {
            let a = unsafe { _mm256_loadu_ps(x.as_ptr().add(p)) };
            for (acc, y) in acc.iter_mut().zip(ys) {
                *acc = unsafe { _mm256_fmadd_ps(a, _mm256_loadu_ps(y.as_ptr().add(p)), *acc) };
            }
            p += 8;
        }
        let mut sums = [0.0; 4];
        for ((sum, acc), y) in sums.iter_mut().zip(acc).zip(ys) {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` has room for one vector.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
            *sum = lanes.iter().sum::<f32>() + x[p..n].iter().zip(&y[p..n]).map(|(a, b)| a * b).sum::<f32>();
        }
        sums
    }

    /// [`dot_avx512`] for AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut p = 0;
        // SAFETY (all loads): p + 8·(lane + 1) ≤ n, within both slices.
        while p + 32 <= n {
            for (lane, a) in acc.iter_mut().enumerate() {
                let o = p + 8 * lane;
                *a = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a) };
            }
            p += 32;
        }
        while p + 8 <= n {
            acc[0] = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(p)), _mm256_loadu_ps(yp.add(p)), acc[0]) };
            p += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let single = _mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
        _mm_cvtss_f32(single) + x[p..n].iter().zip(&y[p..n]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// Runs the loop compiled for AVX-512 (its `run` is inlined here).
    ///
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn with_avx512<L: super::VectorLoop + ?Sized>(l: &L, index: usize, out: &mut [f32]) {
        l.run(index, out)
    }

    /// As [`with_avx512`], for AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn with_avx2<L: super::VectorLoop + ?Sized>(l: &L, index: usize, out: &mut [f32]) {
        l.run(index, out)
    }
}

/// `out[j] = Σ x[p]·columns[j·k + p]` for each of `out.len()` columns of
/// length `k = x.len()` (a row of a thin product): four columns at a time
/// share each load of `x`.
pub(crate) fn dots(x: &[f32], columns: &[f32], out: &mut [f32]) {
    dots_on(Kernel::best(), x, columns, out)
}

/// [`dots`] on the instructions of `kernel`, which this processor must run.
fn dots_on(kernel: Kernel, x: &[f32], columns: &[f32], out: &mut [f32]) {
    let k = x.len();
    let done = out.len() / 4 * 4;
    let mut chunks = out.chunks_exact_mut(4);
    for (c, quad) in (&mut chunks).enumerate() {
        let base = 4 * c * k;
        let ys = [0, 1, 2, 3].map(|j| &columns[base + j * k..][..k]);
        let sums = match kernel {
            // SAFETY: `best` reported the instructions available; every
            // column has `k` values.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { x86::dot4_avx512(x, ys) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::dot4_avx2(x, ys) },
            _ => ys.map(|y| dot_on(kernel, x, y)),
        };
        quad.copy_from_slice(&sums);
    }
    for (j, o) in out.iter_mut().enumerate().skip(done) {
        *o = dot_on(kernel, x, &columns[j * k..][..k]);
    }
}

/// `Σ x[p]·y[p]` over the shorter slice, on the best instructions this
/// processor has.
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    dot_on(Kernel::best(), x, y)
}

/// `Σ x[p]·y[p]` over the shorter slice, on the instructions of `kernel`,
/// which this processor must run.
fn dot_on(kernel: Kernel, x: &[f32], y: &[f32]) -> f32 {
    match kernel {
        // SAFETY: `best` reported the instructions available.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { x86::dot_avx512(x, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { x86::dot_avx2(x, y) },
        _ => {
            let n = x.len().min(y.len());
            let mut lanes = [0.0f32; 8];
            let (xs, ys) = (x[..n].chunks_exact(8), y[..n].chunks_exact(8));
            let tail: f32 = xs.remainder().iter().zip(ys.remainder()).map(|(a, b)| a * b).sum();
            for (a, b) in xs.zip(ys) {
                for l in 0..8 {
                    lanes[l] += a[l] * b[l];
                }
            }
            lanes.iter().sum::<f32>() + tail
        }
    }
}

/// A loop the compiler vectorises, producing one row of output `out` at a
/// time. Its `run` must be `#[inline(always)]` so that it is compiled into
/// [`vectorized`]'s instances for each instruction set (a closure would be
/// called, not inlined, and keep the baseline instructions: measured).
pub(crate) trait VectorLoop: Sync {
    fn run(&self, index: usize, out: &mut [f32]);
}

/// Below this many output values, [`vectorized_rows`] stays on one thread.
const PARALLEL_VALUES: usize = 1 << 14;

/// Runs `l` over every row of `row_len` values of `y` (row `r` is
/// `y[r·row_len..]`), vectorised, in parallel when `y` is large enough.
pub(crate) fn vectorized_rows(y: &mut [f32], row_len: usize, threads: &rayon::ThreadPool, l: &impl VectorLoop) {
    if y.is_empty() || row_len == 0 {
        return;
    }
    let go = |(r, out): (usize, &mut [f32])| vectorized(l, r, out);
    if threads.current_num_threads() > 1 && y.len() >= PARALLEL_VALUES {
        threads.install(|| y.par_chunks_mut(row_len).enumerate().for_each(go));
    } else {
        y.chunks_mut(row_len).enumerate().for_each(go);
    }
}

/// Runs row `index` of `l` compiled for the widest vectors this processor
/// has. Used by the channels-last depthwise convolution and pools, whose
/// loops run along contiguous channels, and Winograd's transforms.
#[inline]
pub(crate) fn vectorized<L: VectorLoop + ?Sized>(l: &L, index: usize, out: &mut [f32]) {
    match Kernel::best() {
        // SAFETY: `best` reported the instructions available.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { x86::with_avx512(l, index, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { x86::with_avx2(l, index, out) },
        _ => l.run(index, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pool, values};

    #[test]
    fn dots_match_reference_on_every_kernel() {
        for kernel in Kernel::available() {
            for len in [0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 65, 130, 387] {
                let (x, y) = (values(len, 1), values(len + 3, 2));
                let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
                let got = dot_on(kernel, &x, &y) as f64;
                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{kernel:?}, {len} elements: got {got}, want {want}");
            }
        }
    }

    #[test]
    fn columns_of_dots_match_reference_on_every_kernel() {
        for kernel in Kernel::available() {
            for n in 1..=8 {
                for k in [0, 1, 15, 16, 17, 31, 32, 33, 48, 130] {
                    let (x, columns) = (values(k, 1), values(n * k, 2));
                    let mut got = vec![0.0; n];
                    dots_on(kernel, &x, &columns, &mut got);
                    for (j, &g) in got.iter().enumerate() {
                        let want: f64 = x.iter().zip(&columns[j * k..][..k]).map(|(a, b)| *a as f64 * *b as f64).sum();
                        assert!((g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{kernel:?}, {n} columns of {k}: column {j} got {g}, want {want}");
                    }
                }
            }
        }
    }

    /// The product in f64, with the bias, a residual laid out as C, and
    /// the activation of `epilogue` (whose own residual is ignored).
    #[allow(clippy::too_many_arguments)]
    fn reference(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], epilogue: Epilogue, residual: Option<&[f32]>, ldc: usize) -> Vec<f64> {
        let (bias, relu) = (epilogue.bias, epilogue.relu);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| b[j] as f64) + residual.map_or(0.0, |r| r[i * ldc + j] as f64);
                for p in 0..k {
                    s += a[i * lda + p] as f64 * b[p * n + j] as f64;
                }
                c[i * n + j] = if relu { s.max(0.0) } else { s };
            }
        }
        c
    }

    /// Rows of A pieced from runs in place, lines of rows apart, give what
    /// the same rows copied out give.
    #[test]
    fn rows_read_in_place_match_copied_rows() {
        let (m, n, len) = (23, 40, 7);
        let runs = [3, 130, 61];
        let source = values(300, 5);
        let lhs = Lhs { data: &source, runs: &runs, run_len: len, row_stride: 5, per_line: 6, line_stride: 40 };
        let k = runs.len() * len;
        let copied: Vec<f32> = (0..m).flat_map(|q| runs.iter().flat_map(move |&s| (0..len).map(move |p| (q / 6) * 40 + (q % 6) * 5 + s + p))).map(|x| source[x]).collect();
        let b = values(k * n, 6);
        let packed = pack(k, n, |p, j| b[p * n + j]);
        let (bias, residual) = (values(n, 7), values(m * n, 8));
        let epilogue = Epilogue { bias: Some(&bias), residual: Residual::Matrix(&residual), relu: true };
        for kernel in Kernel::available() {
            let mut want = vec![0.0; m * n];
            gemm_packed_with(kernel, m, n, Lhs::matrix(&copied, k, k), &packed, &mut want, n, epilogue, None);
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; m * n];
                gemm_packed_with(kernel, m, n, lhs, &packed, &mut got, n, epilogue, Some(&pool(threads)));
                assert_eq!(want, got, "{kernel:?} on {threads} threads");
            }
        }
    }

    #[test]
    fn every_kernel_matches_f64_on_ragged_shapes() {
        for kernel in Kernel::available() {
            for &(m, n, k, lda_pad, ldc_pad) in &[(1, 1, 1, 0, 0), (13, 33, 7, 3, 5), (25, 64, 100, 0, 0), (7, 17, 0, 0, 2), (200, 70, 300, 1, 0), (64, 1024, 96, 0, 0)] {
                // Residual 0: none, 1: a matrix of its own, 2: in C.
                for (bias, residual, relu) in [(false, 0, false), (true, 0, true), (false, 1, false), (true, 1, true), (false, 2, false), (true, 2, true)] {
                    let lda = k + lda_pad;
                    let ldc = n + ldc_pad;
                    let a = values(m * lda, 1);
                    let b = values(k * n, 2);
                    let bias_v = bias.then(|| values(n, 3));
                    // Padding between the residual's rows is NaN, to show
                    // that C's padding is neither read nor written.
                    let residual_v: Vec<f32> = values((m - 1) * ldc + n, 4).iter().enumerate().map(|(x, &v)| if x % ldc < n { v } else { f32::NAN }).collect();
                    let mode = [Residual::None, Residual::Matrix(&residual_v), Residual::InC][residual];
                    let epilogue = Epilogue { bias: bias_v.as_deref(), residual: mode, relu };
                    let packed = pack(k, n, |p, j| b[p * n + j]);
                    let want = reference(m, n, k, &a, lda, &b, epilogue, (residual > 0).then_some(&residual_v[..]), ldc);
                    for threads in [1, 2, 3] {
                        let mut c = vec![f32::NAN; (m - 1) * ldc + n + ldc_pad];
                        if residual == 2 {
                            c[..residual_v.len()].copy_from_slice(&residual_v);
                        }
                        gemm_packed_with(kernel, m, n, Lhs::matrix(&a, lda, k), &packed, &mut c, ldc, epilogue, Some(&pool(threads)));
                        for i in 0..m {
                            for j in 0..n {
                                let (got, w) = (c[i * ldc + j] as f64, want[i * n + j]);
                                assert!((got - w).abs() <= 1e-4 * (1.0 + w.abs()), "{kernel:?} {m}×{n}×{k} threads {threads} residual {residual}: ({i}, {j}) got {got}, want {w}");
                            }
                            // Padding between rows is never written.
                            assert!(c[i * ldc + n..(i * ldc + ldc).min(c.len())].iter().all(|v| v.is_nan()), "{kernel:?}: row {i}'s padding written");
                        }
                    }
                }
            }
        }
    }
}
