//! The configuration's own tests: defaults, error lines, secrets in errors.

use super::*;
use std::time::Duration;

const MINIMAL: &str = "[app]\nname = \"demo\"\n[environments.staging]\nurl = \"http://127.0.0.1:8101\"\n\
    [environments.production]\nurl = \"http://127.0.0.1:8102\"\n\
    [[smoke.checks]]\nname = \"home\"\npath = \"/\"\n";

#[test]
fn the_example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/url-shortener");
    for name in ["safedeploy.toml", "safedeploy.elasticbeanstalk.toml"] {
        let c = Config::load(&dir.join(name)).expect(name);
        assert_eq!(c.app.name.as_str(), "url-shortener");
    }
    let eb = Config::load(&dir.join("safedeploy.elasticbeanstalk.toml")).expect("eb");
    assert_eq!(eb.platform.kind, PlatformKind::ElasticBeanstalk);
    let prod = eb.environments["production"].elasticbeanstalk.as_ref().expect("production");
    assert_eq!(prod.standby.as_deref(), Some("urlshort-green"));
    assert_eq!(eb.elasticbeanstalk().expect("table").poll_max, Dur(Duration::from_secs(30)));
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MINIMAL, Path::new("x/safedeploy.toml")).expect("parses");
    assert_eq!(c.deploy.health_path.0, "/health");
    assert_eq!(c.environments["staging"].name, "staging");
    assert_eq!(c.dir, PathBuf::from("x"));
    assert_eq!(c.sla.allowed_downtime, Dur(Duration::from_secs(900)));
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let text = format!("colour = \"red\"\n{MINIMAL}");
    let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
    let msg = e.to_string();
    assert!(msg.starts_with("s.toml:1: unknown field `colour`"), "{msg}");
}

#[test]
fn bad_url_names_field() {
    let text = MINIMAL.replace("http://127.0.0.1:8101", "ftp:/x");
    let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
    assert_eq!(e.to_string(), "s.toml:4: environments.staging.url: expected an http(s) URL, got \"ftp:/x\"");
}

#[test]
fn a_secret_in_a_type_error_is_not_echoed() {
    let text = MINIMAL.replacen("url =", "env = { DB_PASSWORD = 90817263 }\nurl =", 1);
    let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
    assert_eq!(
        e.to_string(),
        "s.toml:4: environments.staging.env.DB_PASSWORD: invalid type: integer `****`, expected a string, or { from_env = \"NAME\" } for a variable of the deploying shell"
    );
    assert_eq!(super::locate::key_before("a = { B_TOKEN = ", 16), Some("B_TOKEN"));
    assert_eq!(super::locate::key_before("\"X-Api-Key\" = ", 14), Some("X-Api-Key"));
    // Other type errors keep what they say.
    let e =
        Config::parse(&MINIMAL.replacen("url =", "env = { PLAIN = 5 }\nurl =", 1), Path::new("s.toml")).expect_err("x");
    assert!(e.to_string().contains("`5`"), "{e}");
}

#[test]
fn the_effective_config_masks_header_values_and_secret_names_not_capture_sources() {
    let text = format!(
        "{MINIMAL}headers = {{ x-tenant = \"t1\", accept = \"text/html\" }}\n\
         [smoke.checks.capture]\ncookie = {{ header = \"set-cookie\" }}\n\
         [environments.staging.env]\nAPI_TOKEN = \"tok\"\nPLAIN = \"plain-value\"\n"
    );
    let c = Config::parse(&text, Path::new("s.toml")).expect("parses");
    let shown = c.effective().expect("effective");
    assert!(!shown.contains("\"t1\""), "a header value, short as it is, is masked:\n{shown}");
    assert!(!shown.contains("\"tok\""), "{shown}");
    for kept in ["text/html", "plain-value", "set-cookie", "x-tenant"] {
        assert!(shown.contains(kept), "{kept} is shown:\n{shown}");
    }
}
