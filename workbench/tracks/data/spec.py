"""The data track's contract: learner_dataloader.py, made from nanochat/dataloader.py, and its challenges.

The learner writes, in this order, where the loader resumes from, which documents a rank reads, the bookkeeping
of consumed tokens, and the packing loader that joins them into (inputs, targets) batches. The rest of the module
(the plain `tokenizing_distributed_data_loader` wrapper, the imports) is copied as it is.
Light: imports no torch (init, --list and the TUI read it at start-up).
"""

from workbench.course.challenges import Challenge
from workbench.tracks.base import Exercise, Track, TrackFile, TrackSpec

LESSON = "19-data-pipeline.md"
REFERENCE = "nanochat.dataloader"

EXERCISES = (
    Exercise("_resume_position", "starts where a saved state says, like the reference", LESSON,
             todo="return (epoch, pq_idx, rg_idx, doc_idx, tok_idx) to start from",
             notes="In:  state, a dict a loader yielded (or None); source: 'shards' or 'embedded'; this rank and "
                   "world size.\n"
                   "Out: five ints. None or a state for other data -> (0, 0, rank, 0, 0); this rank's own state\n"
                   "     (same world size) -> exactly its numbers; another rank's or world size's -> this rank's\n"
                   "     row group in the next round, (rg_idx // world_size + 1) * world_size + rank, in that file."),
    Exercise("_documents", "reads this rank's documents in the reference's order, epoch after epoch", LESSON,
             todo="yield ((epoch, pq_idx, rg_idx, doc_idx), text) forever from dataset.row_groups",
             notes="In:  position, (epoch, pq_idx, rg_idx, doc_idx, tok_idx) from _resume_position.\n"
                   "Rank r reads row groups r, r + world_size, ... (dataset.row_groups(split, rank, world_size,\n"
                   "source, resume_at=(pq_idx, rg_idx))), skipping doc_idx documents in the first row group only;\n"
                   "after the last one, epoch + 1 from this rank's first row group."),
    Exercise("_advance", "marks consumed tokens like the reference (the queue and its starts)", LESSON,
             todo="consume n tokens from the front of the chunk queue, in place",
             notes="In:  chunks, a deque of [key, tokens, start] lists (tokens[start:] not consumed yet);\n"
                   "     n <= the number of unconsumed tokens.  Out: nothing; chunks changed in place.\n"
                   "A chunk used up exactly is dropped too."),
    Exercise("tokenizing_distributed_data_loader_with_state",
             "yields the reference's batches and states (ranks, resume)", LESSON,
             todo="pack <|bos|> + document tokens into (B, T) inputs/targets shifted by one, with the state after",
             notes="Tokenize tokenizer_batch_size documents at a time with <|bos|> in front; queue them as chunks.\n"
                   "Each batch is a window of B*T + 1 tokens: inputs = window[:-1].view(B, T), targets =\n"
                   "window[1:].view(B, T), int64; _advance by B*T, so the next batch starts with this batch's last\n"
                   "target. The state names the chunk at the front after that (its key and start as tok_idx)."),
)

SPEC = TrackSpec(
    track=Track.DATA,
    title="Data: documents to packed token batches",
    files=(TrackFile("learner_dataloader.py", REFERENCE, EXERCISES, "workbench.tracks.data.probes"),),
)

CHALLENGES = (
    Challenge(
        "same-pages", "Two GPUs train on the very same text", "_documents",
        (("dataset.row_groups(split, rank, world_size, source, resume_at=resume_at)",
          "dataset.row_groups(split, 0, 1, source, resume_at=resume_at)"),),
        ("With several ranks, each should see a different share of the data. What tells a rank which share is its?",
         "In _documents, look at the arguments passed to dataset.row_groups."),
        source="nanochat/dataloader.py"),
    Challenge(
        "unshifted", "The loss falls to zero at once, and the model learns nothing",
        "tokenizing_distributed_data_loader_with_state",
        (("targets = scratch[1:].view(B, T)", "targets = scratch[:-1].view(B, T)"),),
        ("A language model predicts the next token. Which token should sit under input position t in targets?",
         "Near the end of the loader, compare the slices of the window that become inputs and targets."),
        source="nanochat/dataloader.py"),
    Challenge(
        "lost-tails", "Part of every batch's text is never trained on", "_advance",
        (("            chunk[2] += n\n", "            chunk[2] += n + 1\n"),),
        ("Every token of the stream should be predicted exactly once. Count what a step consumes.",
         "In _advance, follow a document that is only partly consumed: where does its next unread token start?"),
        source="nanochat/dataloader.py"),
    Challenge(
        "amnesia", "A resumed run sees text it has already trained on", "_resume_position",
        (("        return epoch, pq_idx, rg_idx, int(state[\"doc_idx\"]), int(state[\"tok_idx\"])",
          "        return epoch, pq_idx, rg_idx, 0, 0"),),
        ("A saved state names a document and a token inside it. Does the resumed loader use both?",
         "In _resume_position, look at what is returned when the state is this rank's own."),
        source="nanochat/dataloader.py"),
)
