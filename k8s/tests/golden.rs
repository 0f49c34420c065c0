//! The CRDs generated from the Rust types are exactly `examples/kubernetes/crds.yaml`
//! (which is also what `causeway install --crds-only` prints).

mod support;

#[test]
fn crds_yaml_matches_the_rust_types() {
    let generated = causeway_k8s::manifests::crds_yaml().expect("CRDs render");
    let path = support::examples().join("crds.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write the golden file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let golden = std::fs::read_to_string(&path).expect("examples/kubernetes/crds.yaml exists");
    if golden != generated {
        let line = golden
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| golden.lines().count().min(generated.lines().count()));
        panic!(
            "examples/kubernetes/crds.yaml differs from the CRDs the Rust types generate, first at line {}:\n  file:      {:?}\n  generated: {:?}\nIf the type change is intended, regenerate it:\n  UPDATE_GOLDEN=1 cargo test -p causeway-k8s --test golden\n  (or: cargo run -p causeway-gateway -- install --crds-only > examples/kubernetes/crds.yaml)",
            line + 1,
            golden.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of output>"),
        );
    }
}

#[test]
fn crds_are_served_stored_and_structural() {
    for crd in causeway_k8s::crds() {
        let name = crd.metadata.name.clone().expect("named");
        let version = &crd.spec.versions[0];
        assert!(version.served && version.storage, "{name}");
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap_or_else(|| panic!("{name} has a schema"));
        assert_eq!(schema.type_.as_deref(), Some("object"), "{name}");
        assert!(
            schema
                .properties
                .as_ref()
                .is_some_and(|p| p.contains_key("status")),
            "{name}"
        );
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{name} has a status subresource"
        );
    }
    let scopes: Vec<(String, String)> = causeway_k8s::crds()
        .into_iter()
        .map(|c| (c.spec.names.kind, c.spec.scope))
        .collect();
    let scopes: Vec<(&str, &str)> = scopes
        .iter()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        scopes,
        [
            ("ClusterLink", "Cluster"),
            ("ServiceExport", "Namespaced"),
            ("ServiceImport", "Namespaced"),
            ("AccessPolicy", "Cluster"),
            ("TrafficPolicy", "Namespaced")
        ]
    );
}
