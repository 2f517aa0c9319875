//! The task contract's states on the wire: the one mapping between
//! [`deliverables_spec::contract`]'s enums and the generated ones, so no
//! code compares state numbers by hand.

use deliverables_spec::contract::{JobState, TaskState};

use crate::v1;

impl From<TaskState> for v1::TaskState {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Blocked => v1::TaskState::Blocked,
            TaskState::Queued => v1::TaskState::Queued,
            TaskState::Leased => v1::TaskState::Leased,
            TaskState::Succeeded => v1::TaskState::Succeeded,
            TaskState::Failed => v1::TaskState::Failed,
            TaskState::Skipped => v1::TaskState::Skipped,
            TaskState::Cancelled => v1::TaskState::Cancelled,
        }
    }
}

impl From<JobState> for v1::JobState {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Running => v1::JobState::Running,
            JobState::Succeeded => v1::JobState::Succeeded,
            JobState::Failed => v1::JobState::Failed,
            JobState::Cancelled => v1::JobState::Cancelled,
        }
    }
}

/// The state a wire code carries; `None` for an unspecified or unknown one
/// (a newer coordinator's).
pub fn task_state(code: i32) -> Option<TaskState> {
    TaskState::ALL
        .into_iter()
        .find(|s| v1::TaskState::from(*s) as i32 == code)
}

/// As [`task_state`], for a job.
pub fn job_state(code: i32) -> Option<JobState> {
    JobState::ALL
        .into_iter()
        .find(|s| v1::JobState::from(*s) as i32 == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_and_zero_is_none() {
        for s in TaskState::ALL {
            assert_eq!(task_state(v1::TaskState::from(s) as i32), Some(s));
        }
        for s in JobState::ALL {
            assert_eq!(job_state(v1::JobState::from(s) as i32), Some(s));
        }
        assert_eq!(task_state(0), None);
        assert_eq!(job_state(99), None);
    }
}
