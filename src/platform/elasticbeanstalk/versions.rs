//! Application versions: the bundle's S3 key, the bucket and region EB uses, and waiting until a
//! version EB holds is processed.

use super::*;

impl ElasticBeanstalk<'_> {
    pub(super) fn key(&self, version: &Version) -> String {
        let prefix = self.cfg.key_prefix.as_deref().unwrap_or(self.app()).trim_matches('/');
        // The commit fixes the bundle (`git archive` is deterministic) and is known in a dry run.
        format!("{prefix}/{}-{}.zip", version.label, crate::git::short(&version.commit))
    }

    /// The upload bucket: configured, or the one EB creates, `elasticbeanstalk-<region>-<account>`.
    pub(super) fn bucket(&self) -> Result<String> {
        if let Some(b) = self.bucket.get() {
            return Ok(b.clone());
        }
        let b = match &self.cfg.bucket {
            Some(b) => b.to_string(),
            None => {
                let region = self.region()?;
                let who = self.aws.read("sts", "get-caller-identity", &[])?;
                let account = who["Account"].as_str().ok_or_else(|| {
                    could_not_act!("aws sts get-caller-identity gave no Account; set platform.elasticbeanstalk.bucket")
                })?;
                format!("elasticbeanstalk-{region}-{account}")
            }
        };
        Ok(self.bucket.get_or_init(|| b).clone())
    }

    pub(super) fn region(&self) -> Result<String> {
        if let Some(r) = &self.cfg.region {
            return Ok(r.to_string());
        }
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let Some(r) = self.fx.env.get(var) {
                return Ok(r.to_string());
            }
        }
        let mut argv = self.cfg.aws.0.clone();
        argv.extend(["configure".into(), "get".into(), "region".into()]);
        if let Some(p) = &self.cfg.profile {
            argv.extend(["--profile".into(), p.to_string()]);
        }
        match self.fx.exec.read(&crate::exec::Cmd::new(argv)) {
            Ok(r) if !r.is_empty() => Ok(r),
            _ => Err(usage!(
                "{}: platform.elasticbeanstalk.region: no region configured here or for the aws CLI; \
                 set region (or bucket)",
                self.config_file.display()
            )),
        }
    }

    pub(super) fn app_version(&self, label: &str) -> Result<Option<AppVersion>> {
        let out = self.aws.read(
            "elasticbeanstalk",
            "describe-application-versions",
            &["--application-name", self.app(), "--version-labels", label],
        )?;
        let mut all: Vec<AppVersion> = serde_json::from_value(out["ApplicationVersions"].clone())
            .context("reading describe-application-versions' ApplicationVersions")?;
        Ok(if all.is_empty() { None } else { Some(all.remove(0)) })
    }

    /// Polls the version until EB has processed it (status compared case-insensitively).
    pub(super) fn wait_processed(&self, label: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0.min(Duration::from_secs(2));
        let mut missing = 0;
        loop {
            match self.app_version(label)? {
                // Just created, not yet visible: EB's reads lag its writes for a moment.
                None if missing < 5 => missing += 1,
                None => return Err(could_not_act!("version {label} vanished from EB application {}", self.app())),
                Some(v) => match v.status.as_deref().unwrap_or("processed").to_ascii_lowercase().as_str() {
                    "processed" => return Ok(()),
                    "failed" => {
                        return Err(verdict!(
                            "Elastic Beanstalk could not process version {label} (status FAILED): \
                             the bundle is not a valid application; see the application's events"
                        ));
                    }
                    _ => {}
                },
            }
            if Instant::now() + pause > deadline {
                return Err(could_not_act!("version {label} is still being processed after {}", self.timeout()));
            }
            self.pause(&mut pause, || format!("version {label} is left being processed by EB"))?;
        }
    }
}
