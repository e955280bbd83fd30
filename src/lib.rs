//! Examples, tests and benchmarks of kafka-events.
