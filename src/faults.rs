//! Faults a test may ask a node to simulate, by environment variable: a
//! slow engine (`IRIS_FAULT_SLOW_IMAGE_LOAD_MS`), a chunk served damaged
//! once (`IRIS_FAULT_CORRUPT_CHUNK`). They exist in debug builds only, the
//! ones the tests run: a release binary never reads them, so no setting of
//! a site's environment makes its node misbehave on purpose.

/// The number a test set for fault `name`, in a debug build; never in a
/// release build.
pub fn fault(name: &str) -> Option<u64> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var(name).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fault_is_read_only_in_a_debug_build() {
        // Set for this process alone; no other test reads this name.
        std::env::set_var("IRIS_FAULT_FOR_THIS_TEST", "7");
        let read = super::fault("IRIS_FAULT_FOR_THIS_TEST");
        assert_eq!(read, cfg!(debug_assertions).then_some(7));
        assert_eq!(super::fault("IRIS_FAULT_NEVER_SET"), None);
    }
}
