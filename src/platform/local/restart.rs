//! `deploy.proxy = "none"`: the old version stopped, the new one started on the
//! environment's own port (requests are dropped in between: the reference the proxy is
//! measured against).

use super::*;

impl Local<'_> {
    /// `deploy.proxy = "none"`: stop the old group, start the new one on the environment's port.
    pub(super) fn deploy_restart(&self, env: &Environment, label: &str, port: u16, dir: &Path) -> Result<Switched> {
        let cmd = self.app_command(env, label, dir, port, None)?;
        if let Some(old) = self.read_state(&env.name)? {
            self.stop_group(&env.name, &old)?;
        }
        self.fx.exec.create_dir(&self.env_dir(&env.name)?.join("data"))?;
        self.record(&env.name, Record::Serving(None))?;
        if !self.fx.dry_run && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(could_not_act!(
                "port {port} of {} is held by {}, which safedeploy did not start; {} stays stopped",
                env.name,
                ports::listeners(port).describe(),
                env.name
            ));
        }
        let log = self.log_file(&env.name)?;
        let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        self.fx.ui.status(format!("{}: starting {label} on port {port}", env.name));
        let handle = match self.fx.exec.spawn_gated(&cmd, &log)? {
            Some((h, gate)) => {
                let pid = h.pids().first().copied().unwrap_or(0) as i32;
                let started_at = crate::clock::rfc3339(crate::clock::now_ms());
                let state = EnvState { label: label.to_string(), pid, port, started_at, dir: Some(dir.to_path_buf()) };
                // Recorded before its supervisor may start it (see `Exec::spawn_gated`).
                self.record(&env.name, Record::Serving(Some(&state)))?;
                gate.open()?;
                Some(h)
            }
            None => None,
        };
        let left = format!("{label} is left running, unverified");
        let group = handle.as_ref().map(|h| h.pids().first().copied().unwrap_or(0) as i32);
        let result = self.wait_healthy(Health {
            env,
            label,
            base: &env.url.base(),
            port,
            group,
            child: handle.as_ref(),
            dir,
            log_from,
            left: &left,
        });
        self.keep(handle);
        let result = result.map_err(|e| match e.downcast::<PortTaken>() {
            // The environment's own port: there is no other to try.
            Ok(t) => could_not_act!("{t}; {} is left stopped", env.name),
            Err(e) => e,
        });
        match result {
            // Leave nothing half-alive behind: a version that failed its start is stopped.
            Err(e)
                if !self.fx.dry_run
                    && matches!(crate::error::kind_of(&e), crate::error::Kind::Verdict | crate::error::Kind::Usage) =>
            {
                self.stop_app(env)?;
                Err(e)
            }
            // It answers on the environment's own port: it serves users from now on.
            other => other.map(|()| Switched::at(crate::clock::now_ms())),
        }
    }
}
