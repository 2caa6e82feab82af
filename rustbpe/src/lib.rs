//! rustbpe: a byte-level BPE trainer with Python bindings.
//!
//! The Python API follows the `rustbpe` 0.1 package on PyPI (`Tokenizer`, `train_from_iterator`,
//! `get_pattern`, `get_mergeable_ranks`, `encode`, `vocab_size`, plus `decode`/`batch_encode`), so
//! code written for one runs with the other, and for the same corpus, pattern and vocabulary size
//! both learn the same merges in the same order.
//!
//! Modules: `pretokenize` (split pattern -> chunks), `count` (chunks -> counts, in parallel),
//! `train` (counts -> merges), `encode` (text -> ids with the learned vocabulary).

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use rayon::prelude::*;

pub mod count;
pub mod encode;
pub mod pretokenize;
pub mod train;

use encode::RankMap;
use pretokenize::{Splitter, GPT4_PATTERN};

/// Texts are handed to a worker once this many bytes are buffered (or `buffer_size` texts).
const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// A byte-level BPE tokenizer: train it on text, then encode text to token ids.
///
/// The vocabulary is the 256 single bytes (ids 0-255) followed by one token per learned merge
/// (ids 256, 257, ...). Merges are chosen by the highest count; on a tie, the smallest pair
/// (left id, then right id) wins, so training is deterministic.
#[pyclass(module = "rustbpe")]
pub struct Tokenizer {
    merges: Vec<(u32, u32)>,
    pattern: String,
    /// None until trained.
    splitter: Option<Arc<Splitter>>,
    vocab: Vec<Vec<u8>>,
    ranks: RankMap,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    fn trained_splitter(&self) -> PyResult<&Splitter> {
        self.splitter.as_deref().ok_or_else(|| {
            PyRuntimeError::new_err("this Tokenizer is not trained yet: call train_from_iterator(...) first")
        })
    }

    fn encode_text(&self, splitter: &Splitter, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        splitter.for_each_chunk(text, |chunk| encode::encode_chunk(&self.ranks, chunk.as_bytes(), &mut ids))?;
        Ok(ids)
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_string())
}

#[pymethods]
impl Tokenizer {
    /// Create an untrained tokenizer (256 byte tokens, no merges, no pattern).
    #[new]
    pub fn new() -> Self {
        let vocab = encode::vocab_from_merges(&[]);
        let ranks = encode::rank_map(&vocab);
        Tokenizer { merges: Vec::new(), pattern: String::new(), splitter: None, vocab, ranks }
    }

    /// Train on the texts yielded by `iterator` (any iterable of `str`).
    ///
    /// - `vocab_size`: the target vocabulary size, at least 256 (the byte tokens); training learns
    ///   `vocab_size - 256` merges, or fewer if the corpus runs out of pairs to merge.
    /// - `buffer_size`: at most this many texts (and about 16 MB) are taken from the iterator at a
    ///   time; a batch is split and counted on all cores, without the GIL, while the next batch is
    ///   taken from the iterator, so the corpus is never held whole.
    /// - `pattern`: the split regex; chunks never cross its matches. None means the GPT-4 pattern
    ///   (`rustbpe.GPT4_PATTERN`). The GPT-4 pattern and variants that differ only in `\p{N}{1,n}`
    ///   use a fast built-in scanner that gives exactly the regex's chunks; other patterns run with
    ///   fancy-regex.
    /// - `progress`: optional callable, called as `progress(done_merges, total_merges)` when the
    ///   merge phase starts (done = 0), every 0.5% of the merges (at most every 256), and at the
    ///   end. The last call always has done == total (if the corpus ran out of pairs, total is
    ///   lowered to the merges actually learned). An exception raised by it stops training and
    ///   propagates. Ctrl-C also stops training.
    ///
    /// Merge order: highest pair count first; ties go to the smallest pair (left id, right id).
    /// An empty corpus (or one with no pair of bytes in any chunk) gives a valid 256-token tokenizer.
    /// On any error the tokenizer keeps its previous state.
    ///
    /// Raises ValueError (vocab_size < 256, buffer_size < 1, invalid pattern, a text that is not
    /// valid Unicode, e.g. with a lone surrogate), TypeError (not iterable, an item that is not a
    /// str, progress not callable); an exception raised by the iterator propagates unchanged.
    #[pyo3(signature = (iterator, vocab_size, buffer_size=8192, pattern=None, *, progress=None))]
    pub fn train_from_iterator(
        &mut self,
        py: Python<'_>,
        iterator: &Bound<'_, PyAny>,
        vocab_size: i64,
        buffer_size: i64,
        pattern: Option<String>,
        progress: Option<PyObject>,
    ) -> PyResult<()> {
        if vocab_size < 256 {
            return Err(PyValueError::new_err(format!(
                "vocab_size must be at least 256 (one token per byte), got {vocab_size}"
            )));
        }
        if vocab_size > (1i64 << 31) {
            return Err(PyValueError::new_err(format!("vocab_size is too large: {vocab_size}")));
        }
        if buffer_size < 1 {
            return Err(PyValueError::new_err(format!("buffer_size must be at least 1, got {buffer_size}")));
        }
        if let Some(cb) = &progress {
            if !cb.bind(py).is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "progress must be callable as progress(done, total), got {}",
                    type_name(cb.bind(py))
                )));
            }
        }
        let pattern = pattern.unwrap_or_else(|| GPT4_PATTERN.to_string());
        let splitter = Arc::new(Splitter::new(&pattern, false).map_err(PyValueError::new_err)?);
        let buffer_size = buffer_size as usize;
        let num_merges = (vocab_size - 256) as u32;

        // ---- ingestion: batches of texts, counted by the workers while the next batch is pulled ----
        let counter = count::ChunkCounter::new();
        ingest(py, iterator, &splitter, &counter, buffer_size)?;

        // ---- merges, with the GIL released except to report progress ----
        let progress_every = (num_merges / 200).clamp(1, 256);
        let report = |done: u32, total: u32| -> PyResult<()> {
            Python::with_gil(|py| {
                py.check_signals()?;
                if let Some(cb) = &progress {
                    cb.call1(py, (done, total))?;
                }
                Ok(())
            })
        };
        let merges = py.allow_threads(|| -> PyResult<Vec<(u32, u32)>> {
            let chunks = counter.finish();
            report(0, num_merges)?;
            let merges = train::learn_merges(
                chunks.iter(),
                num_merges,
                progress_every,
                |done| report(done, num_merges),
            )?;
            drop(chunks);
            // The last report says done == total, also when the corpus ran out of pairs early.
            let done = merges.len() as u32;
            if done < num_merges || done % progress_every != 0 {
                report(done, done)?;
            }
            Ok(merges)
        })?;

        let vocab = encode::vocab_from_merges(&merges);
        self.ranks = encode::rank_map(&vocab);
        self.vocab = vocab;
        self.merges = merges;
        self.pattern = pattern;
        self.splitter = Some(splitter);
        Ok(())
    }

    /// The split pattern used in training ("" before training).
    pub fn get_pattern(&self) -> String {
        self.pattern.clone()
    }

    /// Number of tokens: 256 byte tokens plus the learned merges.
    #[getter]
    pub fn vocab_size(&self) -> usize {
        256 + self.merges.len()
    }

    /// Every token as `(token bytes, id)`, in id order: the format `tiktoken.Encoding` takes as
    /// `mergeable_ranks` (after `dict(...)`).
    pub fn get_mergeable_ranks<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, u32)> {
        self.vocab.iter().enumerate().map(|(id, b)| (PyBytes::new(py, b), id as u32)).collect()
    }

    /// The learned merges in order: merge k joined `(left, right)` into token 256 + k.
    pub fn get_merges(&self) -> Vec<(u32, u32)> {
        self.merges.clone()
    }

    /// Encode `text` to token ids (split with the pattern, then BPE within each chunk, the same
    /// rule tiktoken uses). Raises RuntimeError before training.
    pub fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let splitter = self.trained_splitter()?;
        if text.len() < 4096 {
            return self.encode_text(splitter, text).map_err(PyValueError::new_err);
        }
        py.allow_threads(|| self.encode_text(splitter, text)).map_err(PyValueError::new_err)
    }

    /// Encode a list of texts in parallel; returns one list of ids per text.
    pub fn batch_encode(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        let splitter = self.trained_splitter()?;
        py.allow_threads(|| texts.par_iter().map(|t| self.encode_text(splitter, t)).collect::<Result<Vec<_>, _>>())
            .map_err(PyValueError::new_err)
    }

    /// Decode token ids back to text. Raises ValueError for an unknown id and UnicodeDecodeError
    /// when the bytes are not valid UTF-8 (possible for an arbitrary id sequence).
    pub fn decode(&self, py: Python<'_>, ids: Vec<u32>) -> PyResult<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for id in ids {
            let tok = self.vocab.get(id as usize).ok_or_else(|| {
                PyValueError::new_err(format!("unknown token id {id} (vocab_size is {})", self.vocab.len()))
            })?;
            bytes.extend_from_slice(tok);
        }
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(PyErr::from_value(pyo3::exceptions::PyUnicodeDecodeError::new_utf8(py, &bytes, e)?.into_any())),
        }
    }

    fn __repr__(&self) -> String {
        if self.splitter.is_none() {
            "Tokenizer(untrained)".to_string()
        } else {
            format!("Tokenizer(vocab_size={}, pattern={:?})", self.vocab.len(), self.pattern)
        }
    }
}

/// A batch of Python strings being counted on a worker thread. The worker reads the strings' UTF-8
/// data in place (no copy), so the strings must outlive it: dropping an `InFlight` (also on an early
/// return with an error) first waits for the worker, then releases the strings.
struct InFlight<'scope, 'py> {
    worker: Option<std::thread::ScopedJoinHandle<'scope, Result<(), String>>>,
    _texts: Vec<Bound<'py, PyString>>,
}

impl InFlight<'_, '_> {
    /// Wait for the worker (with the GIL released) and pass on its error.
    fn finish(mut self, py: Python<'_>) -> PyResult<()> {
        let worker = self.worker.take().expect("worker joined once");
        match py.allow_threads(move || worker.join()) {
            Ok(result) => result.map_err(PyValueError::new_err),
            Err(_) => Err(PyRuntimeError::new_err("rustbpe: a counting thread panicked (this is a bug)")),
        }
    }
}

impl Drop for InFlight<'_, '_> {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Take up to `buffer_size` texts (or about `BATCH_BYTES` of them) from the iterator. Returns the
/// texts and whether the iterator is exhausted. Needs the GIL; runs the iterator's Python code.
fn pull_batch<'py>(
    py: Python<'py>,
    items: &mut Bound<'py, pyo3::types::PyIterator>,
    buffer_size: usize,
    index: &mut usize,
) -> PyResult<(Vec<Bound<'py, PyString>>, bool)> {
    let mut held = Vec::new();
    let mut bytes = 0usize;
    while held.len() < buffer_size && bytes < BATCH_BYTES {
        let Some(item) = items.next() else {
            return Ok((held, true));
        };
        let s = item?.downcast_into::<PyString>().map_err(|e| {
            PyTypeError::new_err(format!(
                "train_from_iterator: the iterator must yield str, but item {index} is {}",
                type_name(&e.into_inner())
            ))
        })?;
        // Makes CPython build (and cache in the object) the UTF-8 form if the text is not ASCII.
        bytes += s
            .to_str()
            .map_err(|e| {
                let err = PyValueError::new_err(format!(
                    "train_from_iterator: item {index} is not valid Unicode text (it cannot be encoded as UTF-8)"
                ));
                err.set_cause(py, Some(e));
                err
            })?
            .len();
        held.push(s);
        *index += 1;
    }
    Ok((held, false))
}

/// Count the chunks of every text the iterator yields. The main thread pulls batch k+1 from Python
/// (holding the GIL) while a worker thread splits and counts batch k on rayon's pool (no Python).
fn ingest(
    py: Python<'_>,
    iterator: &Bound<'_, PyAny>,
    splitter: &Splitter,
    counter: &count::ChunkCounter,
    buffer_size: usize,
) -> PyResult<()> {
    let mut items = iterator.try_iter()?;
    let mut index = 0usize;
    std::thread::scope(|scope| -> PyResult<()> {
        let mut in_flight: Option<InFlight<'_, '_>> = None;
        loop {
            let (texts, exhausted) = pull_batch(py, &mut items, buffer_size, &mut index)?;
            if let Some(previous) = in_flight.take() {
                previous.finish(py)?;
            }
            py.check_signals()?;
            if !texts.is_empty() {
                // (address, length) of each text's UTF-8 data, alive as long as `texts` is.
                let spans: Vec<(usize, usize)> = texts
                    .iter()
                    .map(|t| t.to_str().map(|s| (s.as_ptr() as usize, s.len())))
                    .collect::<PyResult<_>>()?;
                let worker = scope.spawn(move || {
                    // SAFETY: the spans point into immutable Python strings that `InFlight` keeps
                    // alive until this thread has been joined; they are valid UTF-8 (from to_str).
                    let strs: Vec<&str> = spans
                        .iter()
                        .map(|&(p, n)| unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(p as *const u8, n)) })
                        .collect();
                    counter.add_batch(splitter, &strs)
                });
                in_flight = Some(InFlight { worker: Some(worker), _texts: texts });
            }
            if exhausted {
                break;
            }
        }
        if let Some(last) = in_flight.take() {
            last.finish(py)?;
        }
        Ok(())
    })
}

/// Split `text` into the chunks training and encoding see (the matches of `pattern`, default the
/// GPT-4 pattern). `engine="auto"` uses the built-in scanner for the GPT-4 pattern family and
/// fancy-regex otherwise; `engine="regex"` always uses fancy-regex (for checking the scanner).
#[pyfunction]
#[pyo3(signature = (text, pattern=None, *, engine="auto"))]
fn split_text(py: Python<'_>, text: &str, pattern: Option<&str>, engine: &str) -> PyResult<Py<PyList>> {
    let force_regex = match engine {
        "auto" => false,
        "regex" => true,
        other => return Err(PyValueError::new_err(format!("engine must be 'auto' or 'regex', got {other:?}"))),
    };
    let splitter = Splitter::new(pattern.unwrap_or(GPT4_PATTERN), force_regex).map_err(PyValueError::new_err)?;
    let mut chunks: Vec<&str> = Vec::new();
    splitter.for_each_chunk(text, |c| chunks.push(c)).map_err(PyValueError::new_err)?;
    Ok(PyList::new(py, chunks)?.unbind())
}

/// True when `pattern` (default GPT-4) is handled by the built-in scanner rather than fancy-regex.
#[pyfunction]
#[pyo3(signature = (pattern=None))]
fn uses_fast_splitter(pattern: Option<&str>) -> PyResult<bool> {
    Ok(Splitter::new(pattern.unwrap_or(GPT4_PATTERN), false).map_err(PyValueError::new_err)?.is_fast())
}

#[pymodule]
fn _rustbpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tokenizer>()?;
    m.add_function(wrap_pyfunction!(split_text, m)?)?;
    m.add_function(wrap_pyfunction!(uses_fast_splitter, m)?)?;
    m.add("GPT4_PATTERN", GPT4_PATTERN)?;
    Ok(())
}
