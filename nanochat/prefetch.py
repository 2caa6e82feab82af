"""Batches made in a background thread while the current training step runs.

The data loader is a generator: reading parquet, tokenizing and cutting rows run in Python on the host. Called
between two steps, that time is lost on every device (on CPU nothing else runs; on CUDA the GPU idles once its
queue is drained). `Prefetcher(loader)` runs the generator in a thread of its own and keeps a bounded queue of
the next `depth` batches, so `next()` usually finds one ready. torch's kernels and the tokenizer release the
GIL, so the thread's work overlaps the step's.

    with Prefetcher(loader, device=device) as batches:
        x, y, state = next(batches)

- Order and content are the loader's: the thread only runs ahead of the consumer, by at most `depth` items.
  A batch's resume state travels with it, so a checkpoint still names the last batch trained on.
- An exception in the loader (a damaged shard, a learner's dataloader crashing) is raised by the `next()` that
  would have returned the batch, as the same exception object with its traceback; the end of a finite loader
  is StopIteration there too.
- `close()` (or leaving the `with`) stops the thread and closes the generator in that thread; it returns once
  the thread is gone. The thread is a daemon, so a process that exits without closing is not held up.
- On CUDA the thread first selects the consumer's device, so pinned staging memory and copies go to that GPU
  (a fresh thread would otherwise start on cuda:0, on every rank).
"""

import queue
import threading

import torch

_ITEM, _ERROR, _END = "item", "error", "end"


class Prefetcher:
    """Iterate over `iterator` in a background thread, `depth` items ahead of the consumer."""

    def __init__(self, iterator, depth: int = 2, device=None, name: str = "nanochat-prefetch"):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._fill, args=(iterator, device), name=name, daemon=True)
        self._thread.start()

    def _fill(self, iterator, device):
        """The thread: put every item (then the end, or the exception that stopped the loader) on the queue."""
        try:
            if device is not None and torch.device(device).type == "cuda":
                torch.cuda.set_device(torch.device(device))
            for item in iterator:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as e:  # raised again in the consumer's thread by __next__
            self._put((_ERROR, e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _put(self, entry) -> bool:
        """Queue `entry` (waiting while the queue is full); False once close() was called."""
        if self._stop.is_set():
            return False
        self._queue.put(entry)
        return True

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._finished = True
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self):
        """Stop the thread and wait for it. Items not yet taken are dropped."""
        self._stop.set()
        # emptied after the stop is set: a put blocked on the full queue completes, and the thread puts nothing
        # more (every put checks the stop first), so the join below cannot wait on a full queue
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
        self._finished = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
