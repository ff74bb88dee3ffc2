//! The test command's share of fuzzing: every target runs over its
//! committed corpus (`fuzz/corpus/TARGET/`, which the cargo-fuzz runs
//! grow, minimised with `cargo fuzz cmin`), then over a fixed number of
//! seeded mutations of it, so that a crash found once stays fixed and the
//! same inputs run on every machine.

use std::path::PathBuf;

/// Seeded mutations per target, of corpus files picked by the same seed:
/// a fixed count, so the replay's time does not grow with the corpus.
const MUTATIONS: usize = 8192;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// xorshift64: the same mutations everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler moves: flip a byte, set one to an extreme,
/// insert or delete a few, or splice a run over another place.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.next(4) {
        let at = rng.next(out.len() + 1);
        match rng.next(5) {
            0 if at < out.len() => out[at] ^= 1 << rng.next(8),
            1 if at < out.len() => out[at] = [0, 0x7f, 0x80, 0xff][rng.next(4)],
            2 => out.splice(at..at, (0..1 + rng.next(8)).map(|_| rng.next(256) as u8)).for_each(drop),
            3 if at < out.len() => drop(out.drain(at..(at + 1 + rng.next(8)).min(out.len()))),
            _ if out.len() > 8 => {
                let from = rng.next(out.len() - 4);
                let run: Vec<u8> = out[from..from + 4].to_vec();
                let to = rng.next(out.len() - 4);
                out[to..to + 4].copy_from_slice(&run);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    for &(name, target) in byob_fuzz::TARGETS {
        let files = corpus(name);
        assert!(!files.is_empty(), "fuzz/corpus/{name} is empty: a target without a corpus replays nothing");
        for (path, bytes) in &files {
            // Shown if the target panics, to reproduce with.
            eprintln!("{name}: {}", path.display());
            target(bytes);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..MUTATIONS {
            let (path, bytes) = &files[rng.next(files.len())];
            let mutated = mutate(bytes, &mut rng);
            eprintln!("{name}: mutation {i} of {}", path.display());
            target(&mutated);
        }
    }
}
