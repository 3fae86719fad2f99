//! The environment's logs: `request-environment-info` / `retrieve-environment-info`, each
//! instance's bundle fetched (bounded) and unpacked.

use super::*;

impl ElasticBeanstalk<'_> {
    /// What `retrieve-environment-info` holds now.
    pub(super) fn retrieve(&self, name: &str) -> Result<Vec<InfoEntry>> {
        let kind = self.cfg.logs.as_str();
        let args = ["--environment-name", name, "--info-type", kind];
        let out = self.aws.read("elasticbeanstalk", "retrieve-environment-info", &args)?;
        serde_json::from_value(out["EnvironmentInfo"].clone()).context("reading retrieve-environment-info")
    }

    /// Polls until every instance has a sample that was not there before (`old`), up to
    /// `logs_timeout`; then goes on with what came, saying which instances did not answer.
    pub(super) fn new_samples(
        &self,
        name: &str,
        instances: &[String],
        old: &HashSet<(Option<String>, Option<String>)>,
    ) -> Result<Vec<InfoEntry>> {
        let kind = self.cfg.logs.as_str();
        let deadline = Instant::now() + self.cfg.logs_timeout.0;
        let mut pause = self.cfg.poll.0.min(Duration::from_secs(3));
        let has = |fresh: &[InfoEntry], i: &str| fresh.iter().any(|e| e.ec2_instance_id.as_deref() == Some(i));
        loop {
            let mut fresh: Vec<InfoEntry> = self
                .retrieve(name)?
                .into_iter()
                .filter(|e| !old.contains(&(e.ec2_instance_id.clone(), e.sample_timestamp.clone())))
                .collect();
            // The newest sample of each instance.
            fresh.sort_by(|a, b| b.sample_timestamp.cmp(&a.sample_timestamp));
            let mut by_instance = HashSet::new();
            fresh.retain(|e| by_instance.insert(e.ec2_instance_id.clone()));
            if !fresh.is_empty() && instances.iter().all(|i| has(&fresh, i)) {
                return Ok(fresh);
            }
            if Instant::now() + pause > deadline {
                if fresh.is_empty() {
                    return Err(could_not_act!(
                        "{name}: no instance delivered its {kind} logs within {}",
                        humantime::format_duration(self.cfg.logs_timeout.0)
                    ));
                }
                let missing: Vec<&str> = instances.iter().filter(|i| !has(&fresh, i)).map(String::as_str).collect();
                self.fx.ui.warn(format!(
                    "{name}: no {kind} logs from {} within the deadline; going on without them",
                    missing.join(", ")
                ));
                return Ok(fresh);
            }
            self.pause(&mut pause, || format!("{name}'s logs were requested but not downloaded"))?;
        }
    }

    /// Downloads every sample under `<state>/elasticbeanstalk/logs/<env>/<time>/<instance>/`.
    pub(super) fn fetch_all(&self, env: &Environment, name: &str, fresh: &[InfoEntry]) -> Result<Vec<PathBuf>> {
        let kind = self.cfg.logs.as_str();
        let stamp = crate::clock::rfc3339(crate::clock::now_ms()).replace([':', '.'], "");
        let root =
            crate::paths::child(&self.state_dir.join("elasticbeanstalk").join("logs"), &env.name, "environment")?
                .join(stamp);
        let mut files = vec![];
        for entry in fresh {
            let instance = entry.ec2_instance_id.clone().unwrap_or_else(|| "unknown-instance".into());
            // The id comes from EB's answer: it names a directory only if it is a plain name.
            let dir = crate::paths::child(&root, &instance, "the instance id EB returned")?;
            self.fetch(entry, &dir).with_context(|| format!("fetching the {kind} logs of {instance}"))?;
            files_under(&dir, &mut files)?;
        }
        self.fx.ui.status(format!(
            "{name}: {} log file(s) from {} instance(s) in {}",
            files.len(),
            fresh.len(),
            root.display()
        ));
        Ok(files)
    }

    /// Downloads one entry of `retrieve-environment-info` into `dir`, unpacking a bundle.
    pub(super) fn fetch(&self, entry: &InfoEntry, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let bundle = self.cfg.logs == settings::LogKind::Bundle;
        let file = dir.join(if bundle { "bundle.zip" } else { "tail.log" });
        let req = Request::get(entry.message.clone()).timeout(Duration::from_secs(300));
        self.fx.http.download(&req, &file, MAX_LOG_DOWNLOAD)?;
        if bundle {
            let f = std::fs::File::open(&file)?;
            let mut zip = zip::ZipArchive::new(f)
                .map_err(|e| could_not_act!("the log bundle of {} is not a zip: {e}", dir.display()))?;
            zip.extract(dir).map_err(|e| could_not_act!("unpacking the log bundle in {}: {e}", dir.display()))?;
            std::fs::remove_file(&file)?;
        }
        Ok(())
    }
}

/// Every regular file under `dir`, sorted.
pub(super) fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}
