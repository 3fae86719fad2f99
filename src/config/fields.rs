//! Every configuration field, what it means and its default: one list that the README's
//! configuration table, `safedeploy init`'s commented file and a completeness test share.
//! The defaults are not written here: they are read from the sections' own `Default`s, so the
//! table cannot drift from the code.

use super::Config;
use std::collections::BTreeMap;

/// One field: its dotted key (`NAME` stands for an environment's name) and what it means.
pub struct Field {
    pub key: &'static str,
    pub meaning: &'static str,
}

const fn f(key: &'static str, meaning: &'static str) -> Field {
    Field { key, meaning }
}

/// The fields in the order a config file has them. A smoke check's own fields are listed
/// once, under `smoke.checks`.
pub const FIELDS: &[Field] = &[
    f("app.name", "the app's name (required)"),
    f("app.source_dir", "what a version bundles, relative to this file (default: its directory)"),
    f("platform.kind", "`local` or `elasticbeanstalk`"),
    f("platform.elasticbeanstalk.application", "the EB application (required on Elastic Beanstalk)"),
    f("platform.elasticbeanstalk.region", "`--region` for every aws call (default: the aws CLI's own)"),
    f("platform.elasticbeanstalk.profile", "`--profile` for every aws call (default: the aws CLI's own)"),
    f("platform.elasticbeanstalk.aws", "the aws CLI as argv (v1 or v2)"),
    f(
        "platform.elasticbeanstalk.bucket",
        "where bundles are uploaded (default: EB's own `elasticbeanstalk-REGION-ACCOUNT`)",
    ),
    f("platform.elasticbeanstalk.key_prefix", "key prefix of the bundles (default: the application's name)"),
    f("platform.elasticbeanstalk.accepted_health", "health values that count as healthy after a deploy"),
    f("platform.elasticbeanstalk.poll", "first pause between polls of a deploy; grows by half up to `poll_max`"),
    f("platform.elasticbeanstalk.poll_max", "longest pause between polls"),
    f("platform.elasticbeanstalk.deploy_timeout", "how long a deploy or CNAME swap may take (then exit 3)"),
    f(
        "platform.elasticbeanstalk.health_grace",
        "once Ready on the new version, how long health may take to be accepted",
    ),
    f("platform.elasticbeanstalk.retries", "retries of a throttled or transient aws call"),
    f("platform.elasticbeanstalk.retry_backoff", "first pause before a retry (doubles)"),
    f("platform.elasticbeanstalk.logs", "what collect-logs asks EB for: `tail` or `bundle`"),
    f("platform.elasticbeanstalk.logs_timeout", "how long to wait for the instances' logs"),
    f("build.command", "a shell line run once per version in its directory (default: none)"),
    f("build.path", "directories (relative to the version) first on the app's PATH"),
    f("build.timeout", "time limit of the build"),
    f("gate.command", "the test command as argv, no shell (required with `[gate]`)"),
    f("gate.junit", "the JUnit report(s) it writes; a glob takes several (required with `[gate]`)"),
    f("gate.dir", "where the command runs, relative to this file (default: the app's source dir)"),
    f("gate.timeout", "time limit of the test command"),
    f("gate.min_tests", "fewest executed tests that can pass (at least 1)"),
    f("gate.source", "change policy: source globs whose change needs a test change (empty: off)"),
    f("gate.tests", "what counts as a test file"),
    f("gate.coverage", "coverage report the command writes, Cobertura XML or lcov (default: none)"),
    f("gate.min_diff_coverage", "percent of the measured changed lines the tests must run, more than 0 (default: off)"),
    f("gate.migrations", "where schema migrations live; new ones are classed expand or contract (empty: off)"),
    f("gate.migration_lint", "an external migration linter, argv, run with the new migration files (default: none)"),
    f("deploy.health_path", "the path a new version must answer with a 2xx before it takes traffic"),
    f("deploy.health_timeout", "how long a new version has to become healthy"),
    f("deploy.stop_grace", "between SIGTERM and SIGKILL when a version is stopped"),
    f("deploy.command", "the web command (default: the version's Procfile `web:` line)"),
    f(
        "deploy.release",
        "the release command (migrations), run once per environment before the version starts (default: the Procfile's `release:` line)",
    ),
    f("deploy.release_timeout", "time limit of the release command"),
    f("deploy.proxy", "`nginx` (or a path to it) owns each environment's port; `none`: stop, then start"),
    f("deploy.system_path", "system directories on the app's PATH after `build.path`"),
    f(
        "deploy.keep_previous",
        "after a switch, how long the previous version keeps running without traffic, for an instant rollback (0: stopped at once)",
    ),
    f("deploy.canary_interval", "under `promote --canary`, the pause between two rounds of checks of the candidate"),
    f(
        "deploy.canary_error_margin",
        "under `promote --canary`, how many percentage points the candidate's 5xx share of its answers to users may exceed the stable version's before a round fails (less than 100)",
    ),
    f(
        "deploy.canary_not_enough",
        "under `promote --canary`, locally: a bake that ends on too few user requests to rule out a lift of the margin `pass`es (said), `fail`s (a verdict) or `extend`s (to `canary_max_bake`, then inconclusive: exit 4)",
    ),
    f(
        "deploy.canary_latency_margin",
        "under `promote --canary`: how much slower (median or p95) the candidate may answer users than the stable version before it fails; locally when the ranks say it is slower too, on Elastic Beanstalk in two reports of enhanced health running (0: off)",
    ),
    f("deploy.canary_max_bake", "the longest a canary's bake is extended to, with `canary_not_enough = \"extend\"`"),
    f(
        "environments.NAME.url",
        "the environment's base URL; locally also where it listens (required). Like every URL in the file: no user or password (it would be printed with each request), no `?query` or `#fragment` (paths are appended), and a port from 1 to 65535 when it has a `:`",
    ),
    f(
        "environments.NAME.env",
        "variables for the app (local platform): text that may use ${SAFEDEPLOY_DATA_DIR}, ${PORT}, ${SAFEDEPLOY_ENV}, ${SAFEDEPLOY_VERSION}, or `{ from_env = \"NAME\" }` for a secret of the deploying shell",
    ),
    f("environments.NAME.elasticbeanstalk.environment", "the EB environment (required on Elastic Beanstalk)"),
    f("environments.NAME.elasticbeanstalk.standby", "its blue/green twin: promote deploys there, then swaps CNAMEs"),
    f("environments.NAME.elasticbeanstalk.cname", "the CNAME users reach, with `standby`"),
    f(
        "environments.NAME.elasticbeanstalk.preview_url",
        "where promote checks the standby before the swap; `{cname}` is its CNAME (default `http://{cname}`)",
    ),
    f("smoke.deadline", "how long to wait for the environment to serve the expected version"),
    f("smoke.interval", "pause between polls while waiting"),
    f("smoke.initial_delay", "pause before the first poll"),
    f("smoke.consecutive", "answers in a row naming the expected version before the checks run"),
    f(
        "smoke.version_path",
        "the app's route naming its version (default: none; the version is read from the proxy's X-Safedeploy-Version header, or the platform's report)",
    ),
    f("smoke.timeout", "time limit of one request"),
    f(
        "smoke.checks",
        "one chain of checks: `name`, `method`, `path`, `query`, `headers`, `form` / `json` / `body`, `follow_redirects`, `cookies` (default true: the chain's cookie jar), `expect_status`, `body_contains`, `body_matches`, `json_equals`, `header_equals`, `header_matches`, `max_latency`, `p95_latency`, `capture` (`json`, `regex`, `header`, or `header` with a `regex`) (at least one check in all)",
    ),
    f(
        "smoke.cleanup",
        "requests run after `smoke.checks` each round, passed or failed, to delete what they made (a chain's own: `cleanup` beside its `checks`)",
    ),
    f("smoke.chains", "independent chains run side by side: `name`, `checks` and `cleanup`"),
    f(
        "smoke.suites",
        "the team's own suites run against the version as evidence: `name`, `command` (argv), `junit` (a glob), `dir`, `timeout` (10m), `phases` (`smoke`, `bake`, `pre_traffic`, `canary`; default the first and third)",
    ),
    f(
        "smoke.metrics",
        "Prometheus or Datadog queries judged as evidence: `name`, `provider`, `url` (Prometheus), `query` (`{{version}}`, `{{env}}`, `{{window}}`), `range` and `step` (15s) (Prometheus' range query, the mean of its points), `formula` over named `queries` (Datadog's v2 timeseries), `compare` (`relative`: `max_ratio` 1.5 and `min_delta`; `absolute`: `max`), `no_data` (`ignore`/`fail`/`extend`, a bake waiting for data up to `extend_up_to`, 15m, then exit 4), `mode` (`enforce`/`shadow`), `phases` (`canary`, `bake`, `smoke`), `interval` (30s), `window` (5m)",
    ),
    f("smoke.include", "a file (relative to this one) with more `[[checks]]` and `[[chains]]`"),
    f("smoke.datadog.site", "the Datadog site; the API is `https://api.SITE`"),
    f("smoke.datadog.api_url", "the API's base URL instead of the site's"),
    f(
        "smoke.datadog.monitors",
        "monitor ids judged in each canary and bake round: `OK` passes, `Alert` fails (unless alerting since before the version took traffic)",
    ),
    f("smoke.datadog.monitor_tags", "monitors named by tags as well (each monitor carrying every tag)"),
    f("smoke.datadog.warn", "what `Warn` says: `ignore` (no verdict, said) or `fail`"),
    f("smoke.datadog.no_data", "what `No Data` (and `Unknown`) says: `ignore` (no verdict, said) or `fail`"),
    f("smoke.datadog.api_key_env", "the variable holding the API key"),
    f("smoke.datadog.app_key_env", "the variable holding the application key"),
    f("sla.allowed_downtime", "the downtime budget per period"),
    f("sla.period", "`calendar year` or a rolling window such as `90d`"),
    f(
        "sla.environments",
        "environments whose incidents spend the budget (the default applies where there is a production)",
    ),
    f("logs.pattern", "regex of interesting lines (default: error levels, exceptions, tracebacks, HTTP 5xx)"),
    f("logs.context", "records of context around each match"),
    f("logs.app_prefixes", "where the platform runs the app: cut from traceback paths to find the repository path"),
    f("logs.alert_lookback", "with `--datadog-payload`: how far before the alert the window starts"),
    f("logs.alert_transitions", "the alert transitions rollback acts on"),
    f("logs.datadog_environments", "Datadog `env:` tag values → environment names, where they differ"),
    f("logs.slack_webhook_env", "`--notify`: the variable holding the Slack webhook URL"),
    f("logs.datadog_api_key_env", "`--notify`: the variable holding the Datadog API key"),
    f("logs.datadog_api_url", "the Datadog API for events (default: smoke.datadog's, else api.datadoghq.com)"),
];

/// Each field's default as TOML text, read from the sections' `Default`s; a field without one
/// (unset, or required) is absent.
pub fn defaults() -> BTreeMap<String, String> {
    use crate::platform::elasticbeanstalk::settings::EbPlatform;
    let mut out = BTreeMap::new();
    let c = Config::defaults(std::path::Path::new("."));
    let sections: [(&str, Option<toml::Value>); 9] = [
        ("platform", toml::Value::try_from(&c.platform).ok()),
        ("platform.elasticbeanstalk", toml::Value::try_from(EbPlatform::default()).ok()),
        ("build", toml::Value::try_from(&c.build).ok()),
        ("gate", toml::Value::try_from(crate::gate::settings::Gate::default()).ok()),
        ("deploy", toml::Value::try_from(&c.deploy).ok()),
        ("smoke", toml::Value::try_from(&c.smoke).ok()),
        ("smoke.datadog", toml::Value::try_from(crate::smoke::spec::Datadog::default()).ok()),
        ("sla", toml::Value::try_from(crate::sla::Sla::default()).ok()),
        ("logs", toml::Value::try_from(&c.logs).ok()),
    ];
    for (prefix, table) in sections {
        let Some(toml::Value::Table(t)) = table else { continue };
        for (k, v) in t {
            if matches!(v, toml::Value::Table(_)) && !k.ends_with("environments") {
                continue;
            }
            out.insert(format!("{prefix}.{k}"), v.to_string());
        }
    }
    // Where a default is empty and says nothing, the table says so in words.
    out.retain(|k, v| !(v == "\"\"" && k.ends_with("application")));
    out
}

/// The README's configuration table: every field, its default and what it means.
pub fn markdown_table() -> String {
    let defaults = defaults();
    let mut t = String::from("| field | default | meaning |\n|---|---|---|\n");
    for f in FIELDS {
        let d = defaults.get(f.key).map(|v| format!("`{}`", v.replace('|', "\\|"))).unwrap_or_else(|| "—".into());
        t.push_str(&format!("| `{}` | {d} | {} |\n", f.key, f.meaning.replace('|', "\\|")));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_with_a_default_is_documented_once() {
        let defaults = defaults();
        let documented: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
        for key in defaults.keys() {
            assert!(documented.contains(&key.as_str()), "{key} has a default but no line in config::fields::FIELDS");
        }
        let mut unique = documented.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), documented.len(), "a field is listed twice");
        assert!(defaults["deploy.system_path"].contains("/usr/bin"));
        assert_eq!(defaults["smoke.deadline"], "\"1m\"");
        assert!(!defaults.contains_key("smoke.version_path"), "the version route has no default");
    }

    #[test]
    fn the_readme_table_is_this_list() {
        let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&readme_path).expect("README.md");
        let (begin, end) = ("<!-- fields:begin -->\n", "<!-- fields:end -->");
        let (Some(a), Some(b)) = (readme.find(begin), readme.find(end)) else {
            panic!("README.md has no {begin:?} … {end:?} section");
        };
        let table = markdown_table();
        if std::env::var_os("SAFEDEPLOY_BLESS").is_some() {
            let text = format!("{}{begin}{table}{}", &readme[..a], &readme[b..]);
            std::fs::write(&readme_path, text).expect("write README.md");
            return;
        }
        assert_eq!(
            &readme[a + begin.len()..b],
            table,
            "README's configuration table is stale; rerun with SAFEDEPLOY_BLESS=1"
        );
    }
}
