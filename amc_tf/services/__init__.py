"""Services: the work behind the commands that uses converters and benchmarks together
(evaluation and parity, compare, the per-layer diff). They import amc_tf.core,
converters and benchmarks, never the CLI (docs/design.md)."""
