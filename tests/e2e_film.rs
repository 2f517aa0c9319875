//! End-to-end tests of issue 20 (film): filled in by its change.
