//! Who may see and change a test session. One answer for REST, evidence, defects and the sync
//! hub: a session the caller may not see does not exist for them (404, or the hub's
//! `doc-unavailable`), whatever the reason.

use uuid::Uuid;

use crate::store::Role;

/// The caller, as far as access is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
}

/// What access is decided from: the session's organisation, assignees and status.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts<'a> {
    pub org_id: Uuid,
    pub assigned_to: &'a [Uuid],
    /// Signed off: read-only for everyone until an admin reopens it.
    pub completed: bool,
}

/// What a caller may do with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionAccess {
    /// Invisible: answered exactly like a session that does not exist.
    None,
    /// May read (auditors; everyone once the session is completed).
    Read,
    /// May record results and edit the document.
    Write,
}

/// Why a visible session cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnlyReason {
    /// The caller's role never writes sessions (auditors).
    Role,
    /// The session is completed (signed off).
    Completed,
}

/// The caller's access to a session.
pub fn session_access(caller: &Caller, s: &SessionFacts<'_>) -> SessionAccess {
    if caller.org_id != s.org_id {
        return SessionAccess::None;
    }
    let writer = match caller.role {
        Role::Admin | Role::Office => true,
        Role::Inspector if s.assigned_to.contains(&caller.user_id) => true,
        Role::Inspector => return SessionAccess::None,
        Role::Auditor => false,
    };
    if writer && !s.completed {
        SessionAccess::Write
    } else {
        SessionAccess::Read
    }
}

/// Why a caller who can see a session cannot write it (`None` when they can).
pub fn read_only_reason(caller: &Caller, s: &SessionFacts<'_>) -> Option<ReadOnlyReason> {
    match session_access(caller, s) {
        SessionAccess::Write | SessionAccess::None => None,
        SessionAccess::Read if caller.role == Role::Auditor => Some(ReadOnlyReason::Role),
        SessionAccess::Read => Some(ReadOnlyReason::Completed),
    }
}

/// Who may complete (sign off) a session: anyone who may write it.
pub fn may_sign_off(caller: &Caller, s: &SessionFacts<'_>) -> bool {
    session_access(caller, s) == SessionAccess::Write
}

/// Who may reopen a completed session: an admin of its organisation (with a reason).
pub fn may_reopen(caller: &Caller, s: &SessionFacts<'_>) -> bool {
    caller.org_id == s.org_id && caller.role == Role::Admin
}

/// Which defects a caller sees: defects tied to sessions follow the visibility of those
/// sessions (any one of them: the session that found it or one that found it again), defects
/// not tied to a session are visible to the whole organisation. `Some(user)`: only those found
/// by a session assigned to `user` (or by none) — the store applies it; `None`: all of the
/// organisation's.
pub fn defect_visibility(caller: &Caller) -> Option<Uuid> {
    (caller.role == Role::Inspector).then_some(caller.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_role_assignment_and_status() {
        let (org, other_org, me, someone) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let caller = |role| Caller {
            user_id: me,
            org_id: org,
            role,
        };
        let assigned = [me];
        let others = [someone];
        let facts = |assigned_to: &'static [Uuid], completed| SessionFacts {
            org_id: org,
            assigned_to,
            completed,
        };
        let mine = Box::leak(Box::new(assigned));
        let theirs = Box::leak(Box::new(others));
        use SessionAccess::*;
        let table = [
            (Role::Admin, &mine[..], false, Write),
            (Role::Admin, &mine[..], true, Read),
            (Role::Office, &theirs[..], false, Write),
            (Role::Inspector, &mine[..], false, Write),
            (Role::Inspector, &mine[..], true, Read),
            (Role::Inspector, &theirs[..], false, None),
            (Role::Inspector, &theirs[..], true, None),
            (Role::Auditor, &theirs[..], false, Read),
        ];
        for (role, assignees, completed, want) in table {
            let f = facts(assignees, completed);
            assert_eq!(
                session_access(&caller(role), &f),
                want,
                "{role} {completed}"
            );
        }
        let foreign = SessionFacts {
            org_id: other_org,
            assigned_to: mine,
            completed: false,
        };
        assert_eq!(session_access(&caller(Role::Admin), &foreign), None);
        assert!(!may_reopen(&caller(Role::Admin), &foreign));
        assert!(may_reopen(&caller(Role::Admin), &facts(mine, true)));
        assert!(!may_reopen(&caller(Role::Office), &facts(mine, true)));
        assert_eq!(
            read_only_reason(&caller(Role::Auditor), &facts(mine, false)),
            Some(ReadOnlyReason::Role)
        );
        assert_eq!(
            read_only_reason(&caller(Role::Inspector), &facts(mine, true)),
            Some(ReadOnlyReason::Completed)
        );
        assert_eq!(defect_visibility(&caller(Role::Auditor)), Option::None);
        assert_eq!(defect_visibility(&caller(Role::Inspector)), Some(me));
    }
}
