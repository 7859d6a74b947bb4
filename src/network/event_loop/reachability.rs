//! Whether other nodes can dial this one, as AutoNAT's tests say.
//!
//! Another member (an AutoNAT server) dials us back at the address it sees
//! our connection come from ([`iris_behaviours::reachability_server`] bounds what it
//! may dial). One success and we are reachable. Failures with no success
//! mean a NAT or a firewall in the way: our record then leaves out the
//! addresses we listen on, which nobody could reach, and others come
//! through our place at a relay. Until the first test we are taken as
//! reachable, as before there were tests.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reachability {
    #[default]
    Untested,
    /// A member dialed us back.
    Reachable,
    /// Every dial-back so far failed.
    Unreachable,
}

impl Reachability {
    /// One test's outcome; whether what we know changed.
    pub(super) fn tested(&mut self, dialed_back: bool) -> bool {
        let next = match (*self, dialed_back) {
            (_, true) => Reachability::Reachable,
            // A failure after a success is a test that went wrong (the
            // server's own trouble), not a NAT that appeared.
            (Reachability::Reachable, false) => Reachability::Reachable,
            (_, false) => Reachability::Unreachable,
        };
        let changed = next != *self;
        *self = next;
        changed
    }

    /// Whether our record should list the addresses we listen on.
    pub(super) fn listed(self) -> bool {
        self != Reachability::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dial_back_makes_a_node_reachable_and_failures_alone_unreachable() {
        let mut r = Reachability::default();
        assert!(r.listed(), "untested: listed as before");
        assert!(r.tested(false));
        assert!(!r.listed(), "behind NAT");
        assert!(!r.tested(false), "no change");
        assert!(r.tested(true));
        assert!(r.listed());
        assert!(
            !r.tested(false),
            "a failure after a success changes nothing"
        );
        assert!(r.listed());
    }
}
