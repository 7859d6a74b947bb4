//! Faults a test may ask a node to simulate, by environment variable: a
//! slow engine (`IRIS_FAULT_SLOW_IMAGE_LOAD_MS`), a chunk served damaged
//! once (`IRIS_FAULT_CORRUPT_CHUNK`), a crash at a chosen point of an
//! owner's change (`IRIS_FAULT_CRASH_AFTER_STAGING`,
//! `IRIS_FAULT_CRASH_AFTER_RECORDING`). They exist in debug builds only, the
//! ones the tests run: a release binary never reads them, so no setting of
//! a site's environment makes its node misbehave on purpose.

/// The number a test set for fault `name`, in a debug build; never in a
/// release build.
pub fn fault(name: &str) -> Option<u64> {
    read(cfg!(debug_assertions), || std::env::var(name).ok())
}

/// Dies at once, as a `kill -9` or a power loss would (no destructor, no
/// flush), if a test set fault `name`; never in a release build.
pub fn crash_if(name: &str) {
    if fault(name).is_some() {
        eprintln!("crashing on purpose: {name} is set");
        std::process::abort();
    }
}

/// The fault's number, if this build reads faults and one was set.
fn read(debug_build: bool, value: impl FnOnce() -> Option<String>) -> Option<u64> {
    if !debug_build {
        return None;
    }
    value()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn a_fault_is_read_only_in_a_debug_build() {
        let set = || Some("7".to_string());
        assert_eq!(read(true, set), Some(7));
        assert_eq!(read(false, set), None, "a release build read a fault");
        assert_eq!(read(true, || None), None);
        assert_eq!(read(true, || Some("seven".into())), None);
        assert_eq!(super::fault("IRIS_FAULT_NEVER_SET"), None);
    }
}
