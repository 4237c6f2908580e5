"""llmdeck's benchmarks: `make bench` runs them all and rewrites BENCHMARKS.md."""
