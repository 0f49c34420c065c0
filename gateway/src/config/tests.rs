use super::*;

const GOOD: &str = r#"
cluster = "west"

[tunnel]
listen = "127.0.0.1:15443"

[registry]
data_dir = "data/west"

[[export]]
namespace = "shop"
name = "web"
endpoints = ["127.0.0.1"]
ports = [{ name = "http", port = 80, target_port = 18080 }]
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn problems(text: &str) -> Vec<String> {
    GatewayConfig::parse(text, no_env())
        .expect_err("config must be refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_good_config_parses_with_defaults() {
    let c = GatewayConfig::parse(GOOD, no_env()).unwrap();
    assert_eq!(c.cluster.as_str(), "west");
    assert_eq!(c.dns.zone, "clusterset.local");
    assert_eq!(c.dns.ttl_seconds, 5);
    assert_eq!(c.tunnel.listen.port(), 15443);
    assert_eq!(c.tunnel_advertise(), c.tunnel.listen);
    assert_eq!(c.exports[0].ports[0].target_port, Some(18080));
    assert_eq!(c.exports[0].weight, 100);
}

#[test]
fn bad_configs_get_exact_messages_with_paths_and_lines() {
    let cases: &[(&str, &[&str])] = &[
        (
            "cluster = \"West\"\n",
            &[
                "cluster (line 1): cluster name \"West\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
            ],
        ),
        (
            "cluster = \"west\"\nbogus = 1\n",
            &[
                "bogus (line 2): unknown field `bogus`, expected one of `cluster`, `replica`, `trust`, `registry`, `tunnel`, `advertise`, `dns`, `imports`, `admin`, `export`, `traffic_policy`, `access`, `kubernetes`",
            ],
        ),
        (
            "cluster = \"west\"\n[trust]\nleaf_lifetime = \"five\"\n",
            &["trust.leaf_lifetime (line 3): invalid value: string \"five\", expected a duration"],
        ),
        (
            r#"cluster = "west"
[[export]]
namespace = "shop"
name = "web"
endpoints = ["127.0.0.1"]
ports = [{ port = 80 }]
[[export]]
namespace = "shop"
name = "api"
endpoints = []
ports = [{ port = 81 }]
[[export]]
namespace = "shop"
name = "db"
endpoints = ["127.0.0.1"]
ports = [
  { name = "pg", port = 70000 },
  { name = "Bad_Name", port = 5433, protocol = "udp" },
]
[tunnel]
listen = "127.0.0.1:15443"
"#,
            &[
                "export[2].ports[0].port (line 17): 70000 is not a port",
                "export[2].ports[1].protocol (line 18): \"udp\" is not supported; the tunnel carries \"tcp\"",
                "export[2].ports[1].name (line 18): port name \"Bad_Name\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
            ],
        ),
        (
            "cluster = \"west\"\n[tunnel]\nlisten = \"0.0.0.0:15443\"\nprobe_misses = 0\n",
            &[
                "advertise.tunnel: required because tunnel.listen 0.0.0.0:15443 is a wildcard address",
                "tunnel.probe_misses (line 4): must be at least 1",
            ],
        ),
        (
            "cluster = \"west\"\n[tunnel]\nlisten = \"127.0.0.1:1\"\n[dns]\nzone = \"Cluster Set\"\n",
            &[
                "dns.zone (line 5): zone label \"Cluster Set\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
            ],
        ),
        (
            r#"cluster = "west"
[[export]]
namespace = "shop"
name = "web"
endpoints = ["127.0.0.1"]
ports = [{ name = "http", port = 80 }]
[[export]]
namespace = "shop"
name = "web"
endpoints = ["127.0.0.1"]
ports = [{ name = "http", port = 80 }, { port = 80 }]
[tunnel]
listen = "127.0.0.1:15443"
"#,
            &[
                "export[1].name (line 9): shop/web is exported twice",
                "export[1].ports[1].port (line 11): port 80 is listed twice",
                "export[1].ports[1].name (line 11): required when an export has more than one port",
            ],
        ),
        (
            "cluster = \"west\"\n[dns\nttl = 5\n",
            &["(syntax) (line 2): unclosed table, expected `]`"],
        ),
        (
            "[dns]\nttl_seconds = 5\n",
            &["cluster: missing field `cluster`"],
        ),
        (
            "cluster = \"west\"\n[[export]]\nnamespace = \"shop\"\nendpoints = [\"127.0.0.1\"]\n",
            &["export[0].name (line 2): missing field `name`"],
        ),
    ];
    for (text, expected) in cases {
        let got = problems(text);
        assert_eq!(&got, expected, "for config:\n{text}");
    }
}

#[test]
fn environment_overrides_apply_before_validation() {
    let env = vec![
        (
            "CAUSEWAY__DNS__LISTEN".to_owned(),
            "127.0.0.1:5353".to_owned(),
        ),
        ("CAUSEWAY__TUNNEL__PROBE_MISSES".to_owned(), "5".to_owned()),
        (
            "CAUSEWAY__REGISTRY__JOIN".to_owned(),
            "[\"127.0.0.2:15444\"]".to_owned(),
        ),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let c = GatewayConfig::parse(GOOD, env).unwrap();
    assert_eq!(c.dns.listen, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(c.tunnel.probe_misses, 5);
    assert_eq!(c.registry.join, vec!["127.0.0.2:15444".parse().unwrap()]);

    let bad = vec![("CAUSEWAY__TUNNEL__PROBE_MISSES".to_owned(), "0".to_owned())];
    let problems = GatewayConfig::parse(GOOD, bad).unwrap_err();
    assert_eq!(problems[0].path, "tunnel.probe_misses");
}

#[test]
fn relative_paths_are_resolved_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("west.toml");
    std::fs::write(&file, GOOD).unwrap();
    let c = GatewayConfig::load(&file, no_env()).unwrap();
    assert_eq!(c.registry.data_dir, dir.path().join("data/west"));
    assert_eq!(c.trust.issuer_dir, dir.path().join("issuer"));
}
