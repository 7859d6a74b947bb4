//! What a site tells the node that asked for a task while the task's
//! outputs may not leave (`release = review` until the owner releases them,
//! `release = aggregate` always).
//!
//! The task's code is the master's to choose, and everything a report
//! carries about a task that ran is a channel it could use: the exit code
//! (8 bits a task), the error text (the executor names sizes, a job's own
//! message could be anything), the exact time it ended, whether it wrote
//! outputs. So the report that leaves says only that the task succeeded or
//! failed, with no code, no text of its own and no output names, and its
//! times in coarse classes: the start to the second, the end at the first
//! power of two seconds after the start that is not before the real end.
//! The report is not sent before that time either, so its arrival says no
//! more than its content. The owner's own record keeps everything.

use iris_behaviours::{TaskReport, TaskState};

/// The report as it may leave, and the earliest time (ms) it may go.
pub(super) struct Told {
    pub report: TaskReport,
    pub not_before_ms: u64,
}

/// `report` as a site may tell it; `held` says why the outputs may not
/// leave now, and is none when they may (the report then goes as it is).
pub(super) fn told(report: &TaskReport, held: Option<String>, node: &str) -> Told {
    let as_it_is = Told {
        report: report.clone(),
        not_before_ms: 0,
    };
    let (Some(held), Some(started)) = (held, report.started_ms) else {
        // Outputs may leave, or the task never ran: a refusal, an approval
        // that never came, a queue; nothing the data decided.
        return as_it_is;
    };
    let start = started / 1000 * 1000;
    let mut told = report.clone();
    told.started_ms = Some(start);
    if !report.state.is_terminal() {
        return Told {
            report: told,
            not_before_ms: 0,
        };
    }
    told.exit_code = None;
    told.outputs = Vec::new();
    told.outputs_truncated = false;
    told.unnamed_outputs = Vec::new();
    told.held = Some(held);
    told.error = match report.state {
        TaskState::Succeeded => None,
        TaskState::Failed | TaskState::TimedOut => {
            told.state = TaskState::Failed;
            Some(format!(
                "failed; its error stays on {node} while its outputs may not leave"
            ))
        }
        TaskState::Cancelled => Some("cancelled".into()),
        TaskState::Lost => Some("interrupted on its node".into()),
        _ => None,
    };
    let finished = report.finished_ms.unwrap_or(start);
    if matches!(report.state, TaskState::Cancelled | TaskState::Lost) {
        // Ended by the master or by this node, not by the code: its time
        // says nothing the code chose, and a class (up to twice the time
        // it ran) would hold the report back for nothing.
        told.finished_ms = Some(finished / 1000 * 1000);
        return Told {
            report: told,
            not_before_ms: 0,
        };
    }
    let end = start + duration_class_ms(finished.saturating_sub(start));
    told.finished_ms = Some(end);
    Told {
        report: told,
        not_before_ms: end,
    }
}

/// The first power of two seconds (1 s at least) that is `took_ms` or more.
fn duration_class_ms(took_ms: u64) -> u64 {
    let mut class = 1000u64;
    while class < took_ms {
        class = class.saturating_mul(2);
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(state: TaskState, exit_code: i64, took_ms: u64, error: &str) -> TaskReport {
        let mut report = TaskReport::queued("job-1".into());
        report.state = state;
        report.exit_code = Some(exit_code);
        report.started_ms = Some(1_700_000_000_123);
        report.finished_ms = Some(1_700_000_000_123 + took_ms);
        report.outputs = vec!["update.json".into()];
        report.error = Some(error.into());
        report
    }

    #[test]
    fn a_held_task_tells_only_whether_it_succeeded_and_a_class_of_time() {
        let held = || Some("held for review".to_string());
        let failed = told(
            &ended(TaskState::Failed, 77, 4_321, "outputs are 1234567 bytes"),
            held(),
            "bob",
        );
        let timed_out = told(
            &ended(TaskState::TimedOut, 137, 7_800, "timed out"),
            held(),
            "bob",
        );
        for t in [&failed, &timed_out] {
            let r = &t.report;
            assert_eq!(r.state, TaskState::Failed);
            assert_eq!(r.exit_code, None);
            assert!(r.outputs.is_empty());
            let error = r.error.as_deref().unwrap();
            assert!(
                !error.contains("1234567") && !error.contains("77"),
                "{error}"
            );
            assert_eq!(r.started_ms, Some(1_700_000_000_000));
            assert_eq!(
                r.finished_ms,
                Some(1_700_000_008_000),
                "8 s: the class of 4.3 s and of 8.0 s"
            );
            assert_eq!(t.not_before_ms, 1_700_000_008_000);
        }
        // Every exit code of a failure, and every time within a class, is
        // told the same: only the outcome and the class remain.
        let a = told(&ended(TaskState::Failed, 1, 5_000, "a"), held(), "bob").report;
        let b = told(&ended(TaskState::Failed, 255, 7_500, "b"), held(), "bob").report;
        assert_eq!(a, b);
        let ok = told(&ended(TaskState::Succeeded, 0, 300, ""), held(), "bob").report;
        assert_eq!(
            (ok.state, ok.error.clone(), ok.held.clone()),
            (TaskState::Succeeded, None, held())
        );
        assert_eq!(ok.finished_ms, Some(1_700_000_001_000));
    }

    #[test]
    fn outputs_that_may_leave_or_a_task_that_never_ran_are_told_as_they_are() {
        let report = ended(TaskState::Failed, 3, 1_500, "exit 3");
        assert_eq!(told(&report, None, "bob").report, report);
        let mut refused = TaskReport::queued("job-2".into());
        refused.state = TaskState::Failed;
        refused.error = Some("refused by bob's policy".into());
        let t = told(&refused, Some("held".into()), "bob");
        assert_eq!((t.report, t.not_before_ms), (refused, 0));
    }

    #[test]
    fn a_task_the_node_lost_is_told_at_once() {
        let lost = ended(
            TaskState::Lost,
            0,
            3 * 3_600_000,
            "interrupted by a restart",
        );
        let t = told(&lost, Some("held".into()), "bob");
        assert_eq!(t.not_before_ms, 0);
        assert_eq!(t.report.finished_ms, Some(1_700_010_800_000));
        assert_eq!(t.report.exit_code, None);
    }

    #[test]
    fn classes_are_powers_of_two_seconds() {
        assert_eq!(duration_class_ms(0), 1000);
        assert_eq!(duration_class_ms(1000), 1000);
        assert_eq!(duration_class_ms(1001), 2000);
        assert_eq!(duration_class_ms(60_000), 64_000);
    }
}
