use super::*;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "causeway-system".into(),
        name: "controllers".into(),
        identity: identity.into(),
        timings: LeaseTimings::default(),
    }
}

fn held_by(holder: &str, version: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("controllers".into()),
            namespace: Some("causeway-system".into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            renew_time: Some(MicroTime(Utc::now())),
            ..LeaseSpec::default()
        }),
    }
}

fn written(step: Step) -> Lease {
    match step {
        Step::Create(lease) | Step::Replace(lease) => lease,
        Step::Wait => panic!("expected a write"),
    }
}

#[test]
fn an_unchanged_foreign_lease_is_taken_after_its_duration_by_the_local_clock() {
    let mut c = Candidate::new(config("b"));
    let start = Instant::now();
    let lease = held_by("a", "7");
    c.observe(Some(lease.clone()), start);
    let later = start + Duration::from_secs(14);
    // A newer resourceVersion with the same record (another field's write) does
    // not restart the clock.
    c.observe(Some(held_by_same(&lease, "8")), later);
    assert_eq!(c.step(later, Utc::now()), Step::Wait);
    let expired = start + Duration::from_secs(15);
    let claim = written(c.step(expired, Utc::now()));
    let spec = claim.spec.as_ref().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(4), "a change of holder counts");
    assert_eq!(claim.metadata.resource_version.as_deref(), Some("8"));
    assert!(!c.leads(), "only a successful write leads");
}

fn held_by_same(lease: &Lease, version: &str) -> Lease {
    let mut newer = lease.clone();
    newer.metadata.resource_version = Some(version.into());
    newer
}

#[test]
fn a_renewal_by_the_holder_restarts_the_clock() {
    let mut c = Candidate::new(config("b"));
    let start = Instant::now();
    c.observe(Some(held_by("a", "7")), start);
    let renewed = start + Duration::from_secs(10);
    c.observe(Some(held_by("a", "9")), renewed);
    assert_eq!(
        c.step(start + Duration::from_secs(20), Utc::now()),
        Step::Wait
    );
}

#[test]
fn the_holder_steps_down_only_past_the_renew_deadline() {
    let mut c = Candidate::new(config("b"));
    let start = Instant::now();
    c.observe(None, start);
    let claim = written(c.step(start, Utc::now()));
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(0)
    );
    c.won(claim, start);
    assert!(c.leads());
    assert_eq!(c.next_wait(), Duration::from_secs(5));
    assert!(!c.failed(start + Duration::from_secs(9)));
    assert!(c.leads());
    assert!(c.failed(start + Duration::from_secs(10)));
    assert!(!c.leads());
    assert_eq!(c.next_wait(), Duration::from_secs(2));
}

#[test]
fn release_clears_the_holder_of_a_held_lease_only() {
    let mut c = Candidate::new(config("b"));
    assert_eq!(c.release(Utc::now()), None, "never held");
    let now = Instant::now();
    c.won(held_by("b", "3"), now);
    let released = c.release(Utc::now()).expect("held");
    let spec = released.spec.expect("spec");
    assert_eq!(spec.holder_identity, None);
    assert_eq!(released.metadata.resource_version.as_deref(), Some("3"));
    assert!(!c.leads());
    // A released (holderless) Lease is free at once for anyone.
    let mut other = Candidate::new(config("c"));
    let mut free = held_by("", "4");
    free.spec.as_mut().expect("spec").holder_identity = None;
    other.observe(Some(free), now);
    assert!(matches!(other.step(now, Utc::now()), Step::Replace(_)));
}
