//! End-to-end tests of issue 20 (clean): filled in by its change.
