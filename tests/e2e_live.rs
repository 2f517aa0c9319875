//! End-to-end tests of issue 20 (live): filled in by its change.
