"""The side-by-side comparison's dataset: written once, read by both sides.

Synthetic (default): N seeded 384-d vectors shaped like sentence embeddings — unit-normalised, a
shared mean direction (real embeddings are anisotropic: all pairs have positive cosine), a
Zipf-weighted mixture of topic clusters, each with its own low-rank spread plus isotropic noise.
Queries are fresh draws from the same mixture (not dataset members).

Real (optional): COMPARE_REAL_VECTORS=path.npy (float32, rows of the same dimension, e.g. MiniLM
embeddings of chat text) — the last Q rows become the queries, the first N the dataset.

Every vector gets a channel `C000`..`C099` uniformly: filtering on one channel keeps 1%.
Ground truth (exact cosine top-10, unfiltered and filtered) is computed here with numpy.

Files in OUT: vectors.f32 (N*D little-endian), queries.f32 (Q*D), groups.u8 (N), texts.txt
(N lines), truth.i32 (Q*10), truth_filtered.i32 (Q*10), meta.json.
"""

import json
import os
import sys
import time

import numpy as np

K = 10
GROUPS = 100


def synthetic(rng, n, d, clusters=256, rank=16):
    mean = rng.standard_normal(d).astype(np.float32)
    mean /= np.linalg.norm(mean)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()
    bases = rng.standard_normal((clusters, rank, d)).astype(np.float32) / np.sqrt(d)
    scales = rng.uniform(0.6, 1.4, clusters).astype(np.float32)

    def draw(m):
        assign = rng.choice(clusters, size=m, p=weights)
        x = 0.45 * mean[None, :] + 0.55 * centers[assign]
        for c in np.unique(assign):
            idx = np.nonzero(assign == c)[0]
            z = rng.standard_normal((idx.size, rank)).astype(np.float32)
            x[idx] += 0.45 * scales[c] * (z @ bases[c])
        x += 0.25 * rng.standard_normal((m, d)).astype(np.float32) / np.sqrt(d)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), assign

    return draw


def top_k(scores, k):
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def main():
    out = sys.argv[1]
    n = int(os.environ.get("N", "100000"))
    q = int(os.environ.get("Q", "200"))
    d = int(os.environ.get("D", "384"))
    seed = int(os.environ.get("SEED", "42"))
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    real = os.environ.get("COMPARE_REAL_VECTORS")
    if real:
        allv = np.load(real).astype(np.float32)
        allv /= np.linalg.norm(allv, axis=1, keepdims=True)
        if allv.shape[0] < q + 1:
            sys.exit(f"{real}: {allv.shape[0]} rows, need more than Q={q}")
        n = min(n, allv.shape[0] - q)
        d = allv.shape[1]
        vectors, queries = allv[:n], allv[-q:]
        topics = np.zeros(n, dtype=np.int64)
        source = f"real: {real}"
    else:
        draw = synthetic(rng, n, d)
        vectors, topics = draw(n)
        queries, _ = draw(q)
        source = "synthetic mixture of Gaussians"
    groups = rng.integers(0, GROUPS, n).astype(np.uint8)
    words = ["deploy", "review", "lunch", "release", "bug", "flaky", "docs", "oncall", "metrics", "design"]
    with open(os.path.join(out, "texts.txt"), "w") as f:
        for i in range(n):
            f.write(f"message {i} about {words[topics[i] % len(words)]} topic {topics[i]}\n")
    vectors.tofile(os.path.join(out, "vectors.f32"))
    queries.tofile(os.path.join(out, "queries.f32"))
    groups.tofile(os.path.join(out, "groups.u8"))
    truth = np.zeros((q, K), dtype=np.int32)
    step = 50
    for s in range(0, q, step):
        truth[s : s + step] = top_k(queries[s : s + step] @ vectors.T, K)
    truth.tofile(os.path.join(out, "truth.i32"))
    truth_f = np.full((q, K), -1, dtype=np.int32)
    for i in range(q):
        g = i % GROUPS
        idx = np.nonzero(groups == g)[0]
        sc = vectors[idx] @ queries[i]
        kk = min(K, idx.size)
        best = idx[np.argsort(-sc, kind="stable")[:kk]]
        truth_f[i, :kk] = best
    truth_f.tofile(os.path.join(out, "truth_filtered.i32"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"n": n, "q": q, "d": d, "k": K, "groups": GROUPS, "seed": seed, "source": source}, f)
    print(f"dataset: {n} x {d} ({source}), {q} queries, in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
