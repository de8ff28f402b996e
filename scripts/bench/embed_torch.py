"""The PyTorch peer of `cargo bench -p valor-embed --bench embed`: sentence-transformers on the
same model files, sentences and batch sizes. For comparison only; torch is never a dependency of
Valor. Usage:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch sentence-transformers
    cargo run -q -p valor-fakes --example corpus -- 1 512 > /tmp/corpus.txt
    /tmp/torchenv/bin/python scripts/bench/embed_torch.py models/all-MiniLM-L6-v2 /tmp/corpus.txt
"""
import statistics
import sys
import time

import torch
from sentence_transformers import SentenceTransformer, models

model_dir, corpus_path = sys.argv[1], sys.argv[2]
sentences = [line.rstrip("\n") for line in open(corpus_path, encoding="utf-8") if line.strip()]
bert = models.Transformer(model_dir, max_seq_length=256)
pooling = models.Pooling(bert.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[bert, pooling, models.Normalize()], device="cpu")
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(sentences)} sentences")

a, b = model.encode(["A man is eating food.", "A man is eating a piece of bread."])
print(f"cos = {float((a * b).sum()):.4f}")

for batch in (1, 8, 32, 64):
    model.encode(sentences[:batch * 2], batch_size=batch)  # warm up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.encode(sentences, batch_size=batch)
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    print(f"batch {batch:>2}: {len(sentences) / median:6.1f} sentences/s (median), "
          f"{len(sentences) / best:6.1f} (best)")

for text in ("Why does the billing service time out?",):
    lat = []
    for _ in range(50):
        start = time.perf_counter()
        model.encode([text])
        lat.append((time.perf_counter() - start) * 1000)
    print(f"one query: p50 {statistics.median(lat):.2f} ms")
