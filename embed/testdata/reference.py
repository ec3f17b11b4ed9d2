"""Independent reference for chatvault-embed's MiniLmEmbedder: sentence-transformers' pipeline for
all-MiniLM-L6-v2 (BertModel -> mean pooling -> Normalize) written out in NumPy, float64.

PyTorch cannot be installed on the machine this was written on (its wheels are not on PyPI's
CPU-only index), so this re-implements what `SentenceTransformer("all-MiniLM-L6-v2").encode(texts,
normalize_embeddings=True)` computes, from the same files: tokenizer.json (HF `tokenizers`, the
library sentence-transformers' fast tokenizer is), model.safetensors, truncation at max_seq_length
256. It first checks itself against the cosine similarities sentence-transformers' documentation
prints, then writes reference_vectors.json.

    python3 -m pip install tokenizers numpy safetensors
    python3 embed/testdata/reference.py "$CHATVAULT_MODEL_DIR" > embed/testdata/reference_vectors.json
"""
import json, math, os, sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

model_dir = sys.argv[1]
W = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
cfg = json.load(open(os.path.join(model_dir, "config.json")))
tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tok.enable_truncation(256)
tok.no_padding()
H, NH, EPS = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
erf = np.vectorize(math.erf)


def ln(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * W[p + ".weight"] + W[p + ".bias"]


def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]


def embed(text):
    ids = tok.encode(text).ids
    L = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:L] \
        + W["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    d = H // NH
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}"
        q, k, v = (lin(x, f"{p}.attention.self.{n}").reshape(L, NH, d).transpose(1, 0, 2) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(L, H)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    v = x.mean(0)
    return ids, v / np.linalg.norm(v)


# Self-check against sentence-transformers' published similarities (see tests/minilm_reference.rs).
published = [
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("A man is playing guitar", "A woman watches TV", -0.0327),
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
]
for a, b, want in published:
    got = float(embed(a)[1] @ embed(b)[1])
    assert abs(got - want) <= 0.0001, (a, b, got, want)
    print(f"self-check: {got:.4f} vs published {want:.4f}", file=sys.stderr)

texts = [
    "",
    "ok",
    "Hello, world!",
    "Has anyone used D3 v4 with React? I keep fighting the DOM ownership question.",
    "Meetup tonight at 6:30pm, pizza provided 🍕",
    "<@U0A1B2C3D> can you share the slides? <https://example.com/slides|slides>",
    "Café naïve résumé — accents are stripped? No: this model keeps them (strip_accents null, lowercase true).",
    "```SELECT count(*) FROM messages WHERE ts > now() - interval '1 day';```",
    "日本語のテキストも埋め込めますか？",
    " ".join(f"word{i}" for i in range(400)),  # truncated at 256 tokens
    "The deploy failed on staging because the database ran out of disk space. " * 5,
]
out = []
for t in texts:
    ids, v = embed(t)
    out.append({"text": t, "ids": ids, "embedding": [round(float(x), 6) for x in v]})
json.dump({
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "generated_by": "embed/testdata/reference.py (NumPy float64 re-implementation, self-checked against sbert.net's published similarities)",
    "cases": out,
}, sys.stdout, ensure_ascii=False)
