"""The scale benchmark: the app at 10k, 100k and 1M chunks of the scale corpus, each figure vs size.

    python -m benchmarks.scale --sizes 10000 100000        # -> benchmarks/results/scale.json, scale.png
    python -m benchmarks.scale --sizes 1000000 --bulk-rows 6000    # 1M, then a bulk import into it
    python -m benchmarks.scale --only search    # the search CPU again, the sizes block-interleaved (no Ray)
    python -m benchmarks.scale --sizes 1000000 --only bulk_vector --bulk-rows 10000    # the vector store alone

Per size (`sizes.<n>` in scale.json, a run adds or replaces its sizes and keeps the others):
- the collection: the first n rows of benchmarks/speed/scale_corpus.py's corpus in both stores of a data folder
  under benchmarks/.cache/scale-data/<n>/ (data.py: built once, in-process, with the rows' vectors and the offline
  extractor's extractions; how long each store took, and the graph store's write rate by tenth of the load; past
  100k rows, written a slice at a time with the 100k rows' extractions tiled: tiled.py);
- through the app on Ray Serve (serve_part.py): `retrieve_p50_ms_c1`, `retrieve_qps_c32` (default mode, HTTP,
  HotpotQA and SciFact questions); `graph_search_p50_ms_c1`, `graph_searches_per_s_c32` (one Graph replica over
  its handle); `rss_mb` per deployment; HotpotQA-100 recall@2/5 in the default mode and `hybrid` (questions 50-99:
  `*_test_recall@k`); `ingest_chunks_per_s` (1,000 new documents through /v1/ingest, embedded and extracted by the
  app, then deleted); `graph_replica_ready_s` (the autoscaler's second Graph replica: from the controller's
  "Adding 1 replica" to the replica's "graph indexes ready", with the degraded graph calls meanwhile);
- in this process: `work_raw_chunks_per_s` (the same 1,000 texts through the embedding backend and the extractor
  alone), `graph_search_cpu_ms_p50` (the Graph replica's index, loaded from the snapshot it wrote, one thread, seeds
  given; at the end of a run, and with --only search, every size's index is loaded and the sizes are measured in
  interleaved blocks, so their p50s come from the same seconds: search_cpu.py; top-level `graph_search_cpu_ratio`;
  each size's figure measured alone right after its other figures stays as `graph_search_cpu_ms_p50_alone`),
  `disk_mb` per store folder;
- with `--bulk-rows R`: benchmarks.speed.bulk_import into the collection (R rows under new ids, deleted again):
  `bulk_import_chunks_per_s` vs `extractor_chunks_per_s`, `bulk_vector_chunks_per_s`.
"""
