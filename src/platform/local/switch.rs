//! Behind the proxy: a version started beside the one serving, checked before traffic (on a
//! copy of the data dir), switched to by a graceful nginx reload, and the previous one retired
//! or kept warm; and what a killed run left behind, tidied up.

use super::*;

impl Local<'_> {
    /// Points the environment's nginx at `port`: a graceful reload when it runs (returned, so
    /// its old workers can be drained), else a start.
    pub(super) fn point_nginx(
        &self,
        nginx: &Nginx<'_>,
        listen: &str,
        port: u16,
        label: &str,
    ) -> Result<Option<nginx::Reloaded>> {
        if nginx.pid().is_some() {
            nginx.switch(listen, port, label).map(Some)
        } else {
            let h = nginx.start(listen, port, label)?;
            self.keep(h);
            Ok(None)
        }
    }

    /// Keeps a started process so it can be reaped.
    pub(super) fn keep(&self, handle: Option<duct::Handle>) {
        if let Some(h) = handle
            && let Ok(mut c) = self.children.lock()
        {
            c.push(h);
        }
    }

    /// Behind the proxy: start beside the old version, switch once healthy, then stop the old.
    pub(super) fn deploy_switch(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        nginx: &Nginx<'_>,
        how: &crate::platform::DeployOptions<'_>,
        reuse: Option<EnvState>,
    ) -> Result<crate::platform::Deployed> {
        let pre = how.pre;
        let port = self.port_of(env)?;
        let name = env.name.as_str();
        let listen = nginx::listen_of(&env.url.0, port);
        self.tidy_behind(env, nginx)?;
        let mut old = self.read_state(name)?;
        if let Some(o) = old.as_ref().filter(|o| o.port == port) {
            // Started without the proxy, on the environment's own port: it must give the port up.
            self.fx
                .ui
                .warn(format!("{name}: {} holds port {port} itself; stopping it so nginx can take the port", o.label));
            self.stop_group(name, o)?;
            old = None;
        }
        let data = self.env_dir(name)?.join("data");
        self.fx.exec.create_dir(&data)?;
        let serving = old.as_ref().map(|o| o.label.as_str());
        let reverting = reuse.is_some();
        let (slot, checked) = match reuse {
            Some(w) => {
                self.fx.ui.status(format!("{name}: switching back to {label}, kept warm on port {}", w.port));
                (w, false)
            }
            None => match self.start_checked(env, label, dir, serving, how)? {
                Started::Slot(slot, checked) => (slot, checked),
                Started::Stopped(stopped) => return Ok(stopped),
                Started::Planned => return self.plan_switch(env, label, nginx, &listen, old.as_ref(), how),
            },
        };
        // Before any user reaches it: the candidate answers on its own port, nginx still sends
        // every request to the old version. (A fresh start was checked on a copy of the data.)
        if let Some(check) = pre.filter(|_| !checked) {
            self.fx.ui.status(format!("{name}: checking {label} on port {} before it takes traffic", slot.port));
            if let Err(e) = check(&format!("http://127.0.0.1:{}", slot.port)) {
                self.stop_group(name, &slot)?;
                self.record(name, Record::Starting(None))?;
                return not_taken(e, label, name, serving);
            }
        }
        let canary_from = match (how.canary, &old) {
            (Some(c), Some(o)) => match self.canary(env, nginx, &listen, o, &slot, c)? {
                Ok(took) => Some(took),
                Err(aborted) => return Ok(crate::platform::Deployed::CanaryAborted(aborted)),
            },
            (Some(_), None) => {
                self.fx.ui.warn(format!("{name}: nothing serves yet, so there is no share to give {label}: no canary"));
                None
            }
            _ => None,
        };
        let (reloaded, retiring) = self.switch_recorded(env, nginx, &listen, &slot, old.as_ref())?;
        let switched = Switched { canary_from, ..self.serves_through(env, label)? };
        if canary_from.is_some() {
            self.record(name, Record::Canary(None))?;
        }
        self.fx.ui.status(format!("{name}: nginx on port {port} now sends users to {label}"));
        // Users are on the new version; what the old workers still carry finishes before the
        // version they forward to is stopped.
        if let Some(r) = reloaded {
            nginx.drain(r);
        }
        self.retire(env, &slot, old, retiring, how.keep_previous && !reverting)?;
        Ok(crate::platform::Deployed::Live(switched))
    }

    /// A fresh start of `label` beside what serves: checked first on a copy of the data when a
    /// check before traffic is asked (`checked`), then started on the environment's own data and
    /// watched while it starts (`how.watch`).
    fn start_checked(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        how: &crate::platform::DeployOptions<'_>,
    ) -> Result<Started> {
        let name = env.name.as_str();
        let mut checked = false;
        if let (Some(check), false) = (how.pre, self.fx.dry_run) {
            if let Some(stopped) = self.check_on_a_copy(env, label, dir, serving, check)? {
                return Ok(Started::Stopped(stopped));
            }
            checked = true;
        }
        let started = crate::clock::now_ms();
        let Some(slot) = self.start_beside(env, label, dir, serving, None)? else { return Ok(Started::Planned) };
        // On the environment's own data now: what its start changed there, the version users
        // are served meets before the switch.
        if let Some(watch) = how.watch
            && let Err(e) = watch(started)
        {
            self.stop_group(name, &slot)?;
            self.record(name, Record::Starting(None))?;
            return Err(e);
        }
        Ok(Started::Slot(slot, checked))
    }

    /// A dry run's rest of the plan after the start, each step printed by its chokepoint.
    fn plan_switch(
        &self,
        env: &Environment,
        label: &str,
        nginx: &Nginx<'_>,
        listen: &str,
        old: Option<&EnvState>,
        how: &crate::platform::DeployOptions<'_>,
    ) -> Result<crate::platform::Deployed> {
        if how.pre.is_some() {
            self.fx
                .ui
                .plan(format!("# would run the smoke chains against {label} on its own port, before it takes traffic"));
        }
        if let Some(c) = how.canary {
            self.fx.ui.plan(format!(
                "# would send {}% of the requests to {label} for {} (the rest to {}), checking it every {}; a failed round sends them all back",
                c.percent,
                humantime::format_duration(c.bake),
                old.map_or("nothing", |o| o.label.as_str()),
                humantime::format_duration(c.interval)
            ));
        }
        self.point_nginx(nginx, listen, 0, label)?;
        let switched = self.serves_through(env, label)?;
        if let Some(o) = old {
            self.stop_group(&env.name, o)?;
        }
        Ok(crate::platform::Deployed::Live(switched))
    }

    /// The switch: recorded first (a run killed from here on leaves the new version recorded as
    /// serving and the old one to be stopped, whichever nginx points at), then nginx pointed at
    /// `slot`. Returns the reload (its old workers to drain) and the versions now retiring.
    fn switch_recorded(
        &self,
        env: &Environment,
        nginx: &Nginx<'_>,
        listen: &str,
        slot: &EnvState,
        old: Option<&EnvState>,
    ) -> Result<(Option<nginx::Reloaded>, Vec<EnvState>)> {
        let name = env.name.as_str();
        let before: Vec<EnvState> = self.read_record(name, Slot::Retiring)?.unwrap_or_default();
        let mut retiring = before.clone();
        retiring.extend(old.cloned());
        self.record(name, Record::Retiring(&retiring))?;
        self.record(name, Record::Serving(Some(slot)))?;
        self.record(name, Record::Starting(None))?;
        match self.point_nginx(nginx, listen, slot.port, &slot.label) {
            Ok(r) => Ok((r, retiring)),
            Err(e) if nginx.pid().is_some() => Err(e),
            Err(e) => {
                // nginx is not up, so the new version took no traffic: the record goes back to
                // what it was and the new version is stopped.
                self.record(name, Record::Serving(old))?;
                self.record(name, Record::Retiring(&before))?;
                self.stop_group(name, slot)?;
                Err(crate::error::Error::could_not_act(format!(
                    "{name}: nginx did not start, so {} took no traffic and was stopped",
                    slot.label
                ))
                .caused_by(e))
            }
        }
    }

    /// The check before traffic on a copy of the environment's data: the candidate is started
    /// beside what serves with `SAFEDEPLOY_DATA_DIR` on a snapshot of the data dir, checked, and
    /// stopped; the snapshot is removed. What its start and its checks write never reaches the
    /// users' data. `Some` when it failed its check (it took no traffic).
    pub(super) fn check_on_a_copy(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        check: &crate::platform::PreTraffic<'_>,
    ) -> Result<Option<crate::platform::Deployed>> {
        let name = env.name.as_str();
        self.fx.ui.status(match database_server(env, &self.fx.env) {
            None => format!(
                "{name}: {label} is checked before traffic on a copy of {name}'s data dir: what its start and its checks write never reaches its users"
            ),
            Some(var) => format!(
                "{name}: {label} is checked before traffic on a copy of {name}'s data dir; its database server ({var}) is not copied: what it writes there, the version users are served meets, and is watched for"
            ),
        });
        match self.on_a_copy(env, label, dir, serving, check, "before it takes traffic")? {
            Ok(()) => {
                self.fx.ui.status(format!("{name}: {label} passed; starting it on {name}'s own data"));
                Ok(None)
            }
            Err(e) => not_taken(e, label, name, serving).map(Some),
        }
    }

    /// Starts `label` (its working copy `dir`) beside what serves, with `SAFEDEPLOY_DATA_DIR`
    /// on a snapshot of the environment's data dir; runs `check` at its own address; stops it
    /// and removes the snapshot. The inner result is the check's.
    pub(super) fn on_a_copy(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        check: &crate::platform::PreTraffic<'_>,
        purpose: &str,
    ) -> Result<Result<()>> {
        let name = env.name.as_str();
        let data = self.env_dir(name)?.join("data");
        let copy = self.env_dir(name)?.join(format!("{CHECK_DATA}{}", crate::clock::now_ms()));
        workcopy::copy_tree(&data, &copy)
            .with_context(|| format!("copying {} to check {label} on it", data.display()))?;
        let slot = match self.start_beside(env, label, dir, serving, Some(&copy)) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&copy);
                return Err(e);
            }
        };
        let Some(slot) = slot else {
            let _ = std::fs::remove_dir_all(&copy);
            return Ok(Ok(()));
        };
        self.fx.ui.status(format!("{name}: checking {label} on port {} {purpose}", slot.port));
        let checked = check(&format!("http://127.0.0.1:{}", slot.port));
        self.stop_group(name, &slot)?;
        self.record(name, Record::Starting(None))?;
        let _ = std::fs::remove_dir_all(&copy);
        Ok(checked)
    }

    /// After a switch to `serving`: the version it replaced (`old`) is kept warm when `keep`
    /// (and `deploy.keep_previous` is not 0), everything else that ran before is stopped. The
    /// warm record is written before the retiring list is cleared, so a run killed between the
    /// two leaves nothing unaccounted for.
    pub(super) fn retire(
        &self,
        env: &Environment,
        serving: &EnvState,
        old: Option<EnvState>,
        retiring: Vec<EnvState>,
        keep: bool,
    ) -> Result<()> {
        let name = env.name.as_str();
        let window = self.deploy.keep_previous.0;
        let previous_warm = self.read_warm(name)?;
        let kept = old.filter(|o| keep && !window.is_zero() && o.pid != serving.pid);
        let mut to_stop: Vec<EnvState> =
            retiring.into_iter().filter(|o| kept.as_ref().is_none_or(|k| k.pid != o.pid)).collect();
        to_stop.extend(
            previous_warm
                .map(|w| w.state)
                .filter(|w| w.pid != serving.pid && kept.as_ref().is_none_or(|k| k.pid != w.pid)),
        );
        // What is not kept is stopped first: a run killed meanwhile leaves each of them still
        // recorded (as retiring, or as the warm previous), never forgotten while it runs.
        for o in &to_stop {
            self.stop_group(name, o)?;
        }
        match &kept {
            Some(k) => {
                let until = crate::clock::now_ms() + window.as_millis() as i64;
                if let Some(dir) = &k.dir {
                    self.fx.exec.effect(
                        || {
                            format!(
                                "tell {}'s supervisor to retire it at {}: write {}",
                                k.label,
                                crate::clock::rfc3339(until),
                                retire_file(dir).display()
                            )
                        },
                        || Ok(std::fs::write(retire_file(dir), until.to_string())?),
                    )?;
                }
                self.record(name, Record::Warm(Some(&Warm { state: k.clone(), until })))?;
                self.fx.ui.status(format!(
                    "{name}: {} keeps running without traffic until {} (deploy.keep_previous): a rollback to it is a switch",
                    k.label,
                    crate::clock::rfc3339(until)
                ));
            }
            None => self.record(name, Record::Warm(None))?,
        }
        self.record(name, Record::Retiring(&[]))?;
        Ok(())
    }

    /// The moment `label` serves through the environment's own address: its health path
    /// answers there (through nginx, which now forwards to it).
    pub(super) fn serves_through(&self, env: &Environment, label: &str) -> Result<Switched> {
        let url = format!("{}{}", env.url.base(), self.deploy.health_path);
        let req = Request::get(&url).timeout(PROBE_TIMEOUT);
        let deadline = Instant::now() + self.deploy.health_timeout.0.min(Duration::from_secs(10));
        let ok = |a: &Result<crate::http::Response>| matches!(a, Ok(r) if (200..300).contains(&r.status));
        match self
            .fx
            .http
            .poll(&req, Duration::from_millis(20), deadline, |a| if ok(a) { Poll::Done } else { Poll::Again })?
        {
            None => Ok(Switched::at(crate::clock::now_ms())),
            Some(a) if ok(&a) => Ok(Switched::at(crate::clock::now_ms())),
            Some(Ok(r)) => Err(verdict!(
                "{} does not serve {label} after the switch: GET {url} answered {} {}",
                env.name,
                r.status,
                r.body_start()
            )),
            Some(Err(e)) => Err(verdict!("{} does not serve {label} after the switch: {e}", env.name)),
        }
    }

    /// Behind the proxy: starts `label` on a port of its own (never an environment's) and waits
    /// until it is healthy there, recorded in `starting.json` meanwhile; `serving` keeps serving.
    /// A port another process takes before the app binds it is picked again, up to
    /// [`PORT_ATTEMPTS`] times. Returns what now runs (`None` in a dry run); a version that
    /// fails its start is stopped.
    pub(super) fn start_beside(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        data: Option<&Path>,
    ) -> Result<Option<EnvState>> {
        let name = env.name.as_str();
        let reserved = self.environment_ports();
        let left = match serving {
            Some(o) => format!("{label} is left starting, not serving; {o} still serves"),
            None => format!("{label} is left starting, not serving"),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let app_port = if self.fx.dry_run { 0 } else { ports::pick(&reserved)? };
            let cmd = self.app_command(env, label, dir, app_port, data)?;
            let log = self.log_file(name)?;
            let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let on = if self.fx.dry_run { "a free port".to_string() } else { format!("port {app_port}") };
            self.fx.ui.status(match serving {
                Some(o) => format!("{name}: starting {label} on {on} beside {o}, which keeps serving"),
                None => format!("{name}: starting {label} on {on}"),
            });
            let (handle, slot) = match self.fx.exec.spawn_gated(&cmd, &log)? {
                Some((h, gate)) => {
                    let slot = EnvState {
                        label: label.to_string(),
                        pid: h.pids().first().copied().unwrap_or(0) as i32,
                        port: app_port,
                        started_at: crate::clock::rfc3339(crate::clock::now_ms()),
                        dir: Some(dir.to_path_buf()),
                    };
                    // Recorded before its supervisor may start it: a run that ends in between
                    // leaves a supervisor that starts nothing.
                    self.record(name, Record::Starting(Some(&slot)))?;
                    gate.open()?;
                    (Some(h), Some(slot))
                }
                None => (None, None),
            };
            let base = format!("http://127.0.0.1:{}", port_text(app_port));
            let result = self.wait_healthy(Health {
                env,
                label,
                base: &base,
                port: app_port,
                group: slot.as_ref().map(|s| s.pid),
                child: handle.as_ref(),
                dir,
                log_from,
                left: &left,
            });
            self.keep(handle);
            let Some(slot) = slot else {
                result?;
                return Ok(None);
            };
            let Err(e) = result else { return Ok(Some(slot)) };
            let lost = e.downcast_ref::<PortTaken>().is_some();
            if lost || matches!(crate::error::kind_of(&e), crate::error::Kind::Verdict | crate::error::Kind::Usage) {
                // It never served: stop it; the old version was never touched.
                self.stop_group(name, &slot)?;
                self.record(name, Record::Starting(None))?;
            }
            if !lost {
                return Err(e);
            }
            if attempt == PORT_ATTEMPTS {
                return Err(crate::error::Error::could_not_act(format!(
                    "{label} could not get a port of its own in {name} in {PORT_ATTEMPTS} tries{}",
                    serving.map(|o| format!("; {o} still serves")).unwrap_or_default()
                ))
                .caused_by(e));
            }
            self.fx.ui.warn(format!(
                "{name}: {e}; starting it again on another port (try {} of {PORT_ATTEMPTS})",
                attempt + 1
            ));
        }
    }

    /// A fresh working copy of the built version for `env` (see [`workcopy`]).
    pub(super) fn working_copy(&self, env: &Environment, label: &str, version: &Path) -> Result<PathBuf> {
        let work = self.env_dir(&env.name)?.join("work").join(format!("{label}-{}", crate::clock::now_ms()));
        self.fx.exec.effect(
            || format!("make {}'s working copy of {label}: {} → {}", env.name, version.display(), work.display()),
            || {
                let started = Instant::now();
                let made = workcopy::make(version, &work)?;
                self.fx.ui.detail(format!(
                    "{}: working copy of {label} made in {:.0}ms ({} file(s) copied, {} linked from the build)",
                    env.name,
                    started.elapsed().as_secs_f64() * 1000.0,
                    made.copied,
                    made.linked
                ));
                Ok(())
            },
        )?;
        Ok(work)
    }

    /// Removes the working copies nothing recorded runs in (those of stopped versions, and of
    /// starts a killed run left). A failure to remove one is said, not fatal.
    pub(super) fn prune_copies(&self, env: &Environment) {
        if self.fx.dry_run {
            return;
        }
        let Ok(env_dir) = self.env_dir(&env.name) else { return };
        // A record that cannot be read: nothing is removed (what it names may run there).
        let Ok(r) = self.records(&env.name) else { return };
        let running = r.serving.into_iter().chain(r.starting).chain(r.retiring).chain(r.warm.map(|w| w.state));
        let mut keep: Vec<PathBuf> = running.filter_map(|s| s.dir).collect();
        let kept_retire_files: Vec<PathBuf> = keep.iter().map(|d| retire_file(d)).collect();
        keep.extend(kept_retire_files);
        // Snapshots of the data a check or a rehearsal left (a killed run): never in use under
        // the lock, which every caller holds.
        for e in std::fs::read_dir(&env_dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(CHECK_DATA) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let Ok(entries) = std::fs::read_dir(env_dir.join("work")) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if keep.contains(&path) {
                continue;
            }
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(err) = removed {
                self.fx.ui.warn(format!(
                    "{}: could not remove the unused working copy {}: {err}",
                    env.name,
                    path.display()
                ));
            }
        }
    }
}

/// How a fresh start beside what serves ended.
enum Started {
    /// Running on its own port, healthy; `true` when already checked on a copy of the data.
    Slot(EnvState, bool),
    /// It failed its check before traffic and was stopped.
    Stopped(crate::platform::Deployed),
    /// A dry run: nothing started.
    Planned,
}
