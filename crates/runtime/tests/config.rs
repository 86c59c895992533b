//! Configuration layering (file, then environment) and its error messages.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use citypass_runtime::ServerConfig;
use citypass_runtime::config::{ConfigError, Origin, load_from};
use serde::Deserialize;

/// A service's configuration: the common server part plus its own settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    server: ServerConfig,
    redis_url: String,
    #[serde(
        default,
        deserialize_with = "citypass_runtime::config::list::deserialize"
    )]
    replicas: Vec<String>,
    #[serde(default)]
    fail_open: bool,
}

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

const FILE: &str = "
server:
  service_name: verifier
  listen: 127.0.0.1:6000
  request_timeout: 2s
  concurrency_limit: 10
redis_url: redis://file:6379
replicas: [a, b]
";

#[test]
fn the_environment_overrides_the_file() {
    let file = yaml(FILE);
    let config: ServiceConfig = load_from(
        Some(file.path()),
        "CITYPASS",
        env(&[
            ("CITYPASS_SERVER__CONCURRENCY_LIMIT", "64"),
            ("CITYPASS_SERVER__OTLP_ENDPOINT", "http://collector:4317"),
            ("CITYPASS_SERVER__SHUTDOWN_DELAY", "5s"),
            ("CITYPASS_REDIS_URL", "redis://env:6379"),
            ("CITYPASS_FAIL_OPEN", "true"),
            ("CITYPASS_CONFIG", "/ignored/path.yaml"),
            ("UNRELATED_VARIABLE", "x"),
        ]),
    )
    .expect("loads");

    // From the file, untouched.
    assert_eq!(config.server.service_name, "verifier");
    assert_eq!(
        config.server.listen,
        "127.0.0.1:6000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.server.request_timeout, Duration::from_secs(2));
    assert_eq!(config.replicas, ["a", "b"]);
    // From the environment, over the file.
    assert_eq!(config.server.concurrency_limit.get(), 64);
    assert_eq!(config.redis_url, "redis://env:6379");
    // From the environment alone.
    assert_eq!(
        config.server.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(config.server.shutdown_delay, Duration::from_secs(5));
    assert!(config.fail_open);
    // Defaults for the rest.
    assert_eq!(
        config.server.shutdown_drain_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(config.server.log_filter, "info");
}

#[test]
fn the_environment_alone_is_enough_and_lists_split_on_commas() {
    let config: ServiceConfig = load_from(
        None,
        "CITYPASS",
        env(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "issuer"),
            ("CITYPASS_REDIS_URL", "redis://env"),
            ("CITYPASS_REPLICAS", "x:1, y:2"),
        ]),
    )
    .expect("loads");
    assert_eq!(config.server, {
        let mut expected = ServerConfig::new("issuer");
        expected.listen = "0.0.0.0:50051".parse().expect("addr");
        expected
    });
    assert_eq!(config.replicas, ["x:1", "y:2"]);
}

#[test]
fn an_empty_variable_unsets_an_optional_value() {
    let file = yaml("server: {service_name: v, otlp_endpoint: 'http://c:4317'}\nredis_url: r\n");
    let config: ServiceConfig = load_from(
        Some(file.path()),
        "CITYPASS",
        env(&[("CITYPASS_SERVER__OTLP_ENDPOINT", "")]),
    )
    .expect("loads");
    assert_eq!(config.server.otlp_endpoint, None);
}

#[test]
fn a_bad_value_from_the_environment_names_key_and_variable() {
    let file = yaml(FILE);
    let err = load_from::<ServiceConfig, _, _, _>(
        Some(file.path()),
        "CITYPASS",
        env(&[("CITYPASS_SERVER__REQUEST_TIMEOUT", "5")]),
    )
    .expect_err("a bare number is not a duration");
    let ConfigError::Invalid {
        key,
        origin,
        message,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(key, "server.request_timeout");
    assert_eq!(
        origin,
        &Origin::Environment("CITYPASS_SERVER__REQUEST_TIMEOUT".to_owned())
    );
    assert!(message.contains("invalid duration `5`"), "{message}");
    let text = err.to_string();
    assert!(text.contains("server.request_timeout"), "{text}");
    assert!(text.contains("CITYPASS_SERVER__REQUEST_TIMEOUT"), "{text}");
}

#[test]
fn a_misspelt_key_in_the_file_names_key_and_file() {
    let file = yaml("server:\n  service_name: v\n  request_timout: 2s\nredis_url: r\n");
    let err = load_from::<ServiceConfig, _, _, _>(Some(file.path()), "CITYPASS", env(&[]))
        .expect_err("unknown key");
    let ConfigError::Invalid {
        key,
        origin,
        message,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(key, "server.request_timout");
    assert_eq!(origin, &Origin::File(file.path().to_owned()));
    assert!(
        message.contains("unknown field") && message.contains("`request_timout`"),
        "{message}"
    );
    assert!(
        message.contains("`request_timeout`"),
        "names what is expected: {message}"
    );
    assert!(err.to_string().contains(&file.path().display().to_string()));
}

#[test]
fn a_misspelt_variable_is_an_error_too() {
    let file = yaml(FILE);
    let err = load_from::<ServiceConfig, _, _, _>(
        Some(file.path()),
        "CITYPASS",
        env(&[("CITYPASS_SERVER__LISTN", "0.0.0.0:1")]),
    )
    .expect_err("unknown key");
    assert!(
        matches!(&err, ConfigError::Invalid { key, origin: Origin::Environment(var), .. }
            if key == "server.listn" && var == "CITYPASS_SERVER__LISTN"),
        "{err:?}"
    );
}

#[test]
fn wrong_types_missing_keys_and_bad_numbers_are_located() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "server: {service_name: v, concurrency_limit: 0}\nredis_url: r\n",
            "server.concurrency_limit",
            "nonzero",
        ),
        (
            "server: {service_name: v, concurrency_limit: many}\nredis_url: r\n",
            "server.concurrency_limit",
            "many",
        ),
        (
            "server: {service_name: v, listen: nowhere}\nredis_url: r\n",
            "server.listen",
            "socket address",
        ),
        (
            "server: {service_name: v, request_timeout: 0s}\nredis_url: r\n",
            "server.request_timeout",
            "greater than zero",
        ),
        (
            "server: {listen: '127.0.0.1:1'}\nredis_url: r\n",
            "server",
            "missing field `service_name`",
        ),
        (
            "server: {service_name: v}\n",
            "",
            "missing field `redis_url`",
        ),
    ];
    for (text, expected_key, expected_message) in cases {
        let file = yaml(text);
        let err = load_from::<ServiceConfig, _, _, _>(Some(file.path()), "CITYPASS", env(&[]))
            .expect_err(text);
        match &err {
            ConfigError::Invalid { key, message, .. } => {
                assert_eq!(key, expected_key, "{text}: {err}");
                assert!(message.contains(expected_message), "{text}: {err}");
            }
            other => panic!("{text}: unexpected error {other:?}"),
        }
    }
}

#[test]
fn malformed_yaml_and_missing_files_name_the_file() {
    let file = yaml("server: [unclosed\n");
    let err = load_from::<ServiceConfig, _, _, _>(Some(file.path()), "CITYPASS", env(&[]))
        .expect_err("bad yaml");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.path().display().to_string()));

    let file = yaml("server: {service_name: a}\nserver: {service_name: b}\nredis_url: r\n");
    let err = load_from::<ServiceConfig, _, _, _>(Some(file.path()), "CITYPASS", env(&[]))
        .expect_err("duplicate key");
    assert!(err.to_string().contains("duplicate"), "{err}");

    let missing = std::path::Path::new("/nonexistent/citypass.yaml");
    let err = load_from::<ServiceConfig, _, _, _>(Some(missing), "CITYPASS", env(&[]))
        .expect_err("no file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/citypass.yaml"));
}

#[test]
fn a_malformed_variable_name_is_refused() {
    let err = load_from::<ServiceConfig, _, _, _>(
        None,
        "CITYPASS",
        env(&[("CITYPASS_SERVER____LISTEN", "x")]),
    )
    .expect_err("empty segment");
    assert!(
        matches!(&err, ConfigError::Environment { var, .. } if var == "CITYPASS_SERVER____LISTEN"),
        "{err:?}"
    );
}

#[test]
fn the_command_lines_variables_are_not_a_services() {
    let file = yaml(FILE);
    let config: ServiceConfig = load_from(
        Some(file.path()),
        "CITYPASS",
        env(&[
            ("CITYPASS_CLI_CREDENTIAL", "/home/ops/operator.pem"),
            ("CITYPASS_CLI_IDENTITY_URL", "https://identity:50051"),
        ]),
    )
    .expect("a service starts with the CLI's variables exported");
    assert_eq!(config.redis_url, "redis://file:6379");
    // Any other unknown variable under the prefix is still an error.
    let err = load_from::<ServiceConfig, _, _, _>(
        Some(file.path()),
        "CITYPASS",
        env(&[("CITYPASS_IDENTITY_URL", "https://identity:50051")]),
    )
    .expect_err("unknown key");
    assert!(err.to_string().contains("CITYPASS_IDENTITY_URL"), "{err}");
}

#[test]
fn a_value_is_typed_by_its_field_never_by_its_look() {
    // Digits stay text in a text field, a comma stays in a string, and the same digits
    // become a number where the field asks for one.
    let config: ServiceConfig = load_from(
        None,
        "CITYPASS",
        env(&[
            ("CITYPASS_SERVER__SERVICE_NAME", "12345"),
            ("CITYPASS_SERVER__LOG_FILTER", "info,citypass=debug"),
            ("CITYPASS_SERVER__CONCURRENCY_LIMIT", "12345"),
            ("CITYPASS_REDIS_URL", "true"),
        ]),
    )
    .expect("loads");
    assert_eq!(config.server.service_name, "12345");
    assert_eq!(config.server.log_filter, "info,citypass=debug");
    assert_eq!(config.server.concurrency_limit.get(), 12345);
    assert_eq!(config.redis_url, "true");
    assert!(config.replicas.is_empty());
}
