//! End-to-end tests of issue 20 (cutdowns): filled in by its change.
