use super::*;

fn options() -> InstallOptions {
    InstallOptions::new("west".parse().expect("a valid cluster name"))
}

#[test]
fn renders_every_object() {
    let bundle = install(&options()).expect("renders");
    let yaml = bundle.to_yaml().expect("serializes");
    for kind in [
        "kind: Namespace",
        "kind: CustomResourceDefinition",
        "kind: ServiceAccount",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Role\n",
        "kind: RoleBinding",
        "kind: ConfigMap",
        "kind: Deployment",
        "kind: Service\n",
    ] {
        assert!(yaml.contains(kind), "{kind} missing");
    }
    assert!(yaml.contains("# clusterset.local:53 {"));
    assert!(bundle.trust_secret.is_none());
}

#[test]
fn node_ports_need_node_port_type_and_range() {
    let mut o = options();
    o.node_port_tunnel = Some(30443);
    let err = install(&o).expect_err("LoadBalancer with a node port");
    assert!(err.to_string().contains("--service-type NodePort"), "{err}");
    o.service_type = GatewayServiceType::NodePort;
    o.node_port_registry = Some(80);
    let err = install(&o).expect_err("out of range");
    assert!(err.to_string().contains("--node-port-registry 80"), "{err}");
}

#[test]
fn advertise_sets_the_config_keys_with_node_ports() {
    let mut o = options();
    o.service_type = GatewayServiceType::NodePort;
    o.node_port_tunnel = Some(30443);
    o.node_port_registry = Some(30444);
    o.advertise = Some("172.18.0.2".parse().expect("an address"));
    let bundle = install(&o).expect("renders");
    let toml = &bundle.config_map.data.as_ref().expect("data")[config::FILE_NAME];
    assert!(toml.contains("tunnel = \"172.18.0.2:30443\""), "{toml}");
    assert!(toml.contains("registry = \"172.18.0.2:30444\""), "{toml}");
    let env = bundle
        .deployment
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "CAUSEWAY_REPLICA",
            "CAUSEWAY__KUBERNETES__POD_NAME",
            "CAUSEWAY__KUBERNETES__NAMESPACE",
            "POD_IP",
            "CAUSEWAY__KUBERNETES__POD_IP"
        ],
        "with --advertise only the mirror's endpoint comes from the pod's IP"
    );
    assert!(toml.contains("[kubernetes]\nmode = \"on\""), "{toml}");
}

#[test]
fn link_manifest_refuses_a_bad_spec_with_paths() {
    let problems = link_manifest(LinkOptions {
        peer: "West".into(),
        registry: vec!["10.0.0.1".into()],
        gateway: "10.0.0.1:15443".into(),
        probe: ProbeSpec::default(),
        token_secret_ref: None,
    })
    .expect_err("invalid");
    let fields: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(fields, ["spec.peer", "spec.registry[0]"]);
}

#[test]
fn link_manifest_is_named_after_the_peer() {
    let link = link_manifest(LinkOptions {
        peer: "west".into(),
        registry: vec!["172.18.0.2:30444".into()],
        gateway: "172.18.0.2:30443".into(),
        probe: ProbeSpec::default(),
        token_secret_ref: None,
    })
    .expect("valid");
    let yaml = link_yaml(&link).expect("serializes");
    assert!(
        yaml.starts_with("---\napiVersion: causeway.dev/v1alpha1\nkind: ClusterLink\n"),
        "{yaml}"
    );
    assert!(yaml.contains("name: west"), "{yaml}");
}
