//! Time the training phases on a directory of .txt files, without Python:
//! `cargo run --release --example phases -- DIR VOCAB` (Linux: CPU time via CLOCK_PROCESS_CPUTIME_ID).
use std::time::Instant;

use _rustbpe::{count::ChunkCounter, pretokenize::{Splitter, GPT4_PATTERN}, train::learn_merges};

#[repr(C)]
struct Timespec { sec: i64, nsec: i64 }
extern "C" { fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32; }
/// CPU seconds used by the whole process (all threads): a load-independent measure of work.
fn cpu() -> f64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(2, &mut t) }; // CLOCK_PROCESS_CPUTIME_ID
    t.sec as f64 + t.nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("/work/shared/corpus");
    let vocab: u32 = args.get(2).map(|v| v.parse().unwrap()).unwrap_or(32768);
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt")).collect();
    paths.sort();
    let texts: Vec<String> = paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let total: usize = texts.iter().map(|t| t.len()).sum();
    let splitter = Splitter::new(GPT4_PATTERN, false).unwrap();

    let t = Instant::now(); let c = cpu();
    let mut n = 0usize;
    for text in &texts { splitter.for_each_chunk(text, |_| n += 1).unwrap(); }
    let split_s = t.elapsed().as_secs_f64(); let split_c = cpu() - c;

    let t = Instant::now(); let c = cpu();
    let counter = ChunkCounter::new();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    counter.add_batch(&splitter, &refs).unwrap();
    let chunks = counter.finish();
    let count_s = t.elapsed().as_secs_f64(); let count_c = cpu() - c;

    let occ = chunks.iter().fold([0i64; 3], |mut a, (c, n)| { let l = c.as_ref().len(); a[if l <= 7 { 0 } else if l <= 15 { 1 } else { 2 }] += n; a });
    println!("  unique per tier (<=7, 8-15, >15 bytes): {:?}; occurrences: {:?}", chunks.tier_sizes(), occ);
    let t = Instant::now(); let c = cpu();
    let merges = learn_merges::<(), _, _>(chunks.iter(), vocab - 256, 0, |_| Ok(())).unwrap();
    let merge_s = t.elapsed().as_secs_f64(); let merge_c = cpu() - c;
    println!("{:.1} MB, {} chunks, {} unique, {} threads", total as f64 / 1e6, n, chunks.len(), rayon::current_num_threads());
    println!("  split only (1 thread): wall {split_s:.3}s cpu {split_c:.3}s");
    println!("  split+count:           wall {count_s:.3}s cpu {count_c:.3}s");
    println!("  {} merges:          wall {merge_s:.3}s cpu {merge_c:.3}s", merges.len());
}
