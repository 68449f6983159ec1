"""The per-layer comparison behind `amc-tf diff`: `metrics` (tap points, per-layer figures
and the table, numpy only), `taps` (each runtime's per-layer outputs) and `subject` (a
checkpoint or OUTDIR opened in up to three runtimes, and the diff run)."""
