//! The implementations the current true-peak detector and limiter replaced,
//! kept verbatim (but for names) as the references the tests hold the
//! current ones to, bit for bit: each later optimisation (skipped steps,
//! shortcuts in the gain computer) must not change a single output sample.

pub(crate) mod limiter;
pub(crate) mod true_peak;
