//! The local platform's crash-safety records, one type for all five: what serves an
//! environment (`state.json`), a version being started (`starting.json`), versions to stop once
//! the switch is sure (`retiring.json`), a canary's candidate (`canary.json`) and the previous
//! version kept warm (`warm.json`).
//!
//! - Every write is a [`Record`] and goes through the side-effect chokepoint
//!   ([`crate::exec::Exec::effect`]): each is a numbered step, so the fault sweep kills and fills
//!   the disk between any two.
//! - What a killed run left is tidied by a pure plan ([`tidy_plan`]) over one snapshot of them
//!   ([`Records`]) and what runs ([`Facts`]); [`Local::tidy_behind`] carries it out.

use super::*;

/// The five records of an environment, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Serving,
    Starting,
    Retiring,
    Canary,
    Warm,
}

impl Slot {
    fn file(self) -> &'static str {
        match self {
            Slot::Serving => "state.json",
            Slot::Starting => "starting.json",
            Slot::Retiring => "retiring.json",
            Slot::Canary => "canary.json",
            Slot::Warm => "warm.json",
        }
    }
}

/// One write of a record: its new value, `None` (or no retiring version) to forget it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Record<'r> {
    Serving(Option<&'r EnvState>),
    Starting(Option<&'r EnvState>),
    Retiring(&'r [EnvState]),
    Canary(Option<&'r EnvState>),
    Warm(Option<&'r Warm>),
}

impl Record<'_> {
    fn slot(&self) -> Slot {
        match self {
            Record::Serving(_) => Slot::Serving,
            Record::Starting(_) => Slot::Starting,
            Record::Retiring(_) => Slot::Retiring,
            Record::Canary(_) => Slot::Canary,
            Record::Warm(_) => Slot::Warm,
        }
    }

    /// What the write does, as the step's text (no pid or port: the fault table compares them).
    fn describe(&self, env: &str) -> String {
        match self {
            Record::Serving(Some(s)) => format!("record {} as serving {env}", s.label),
            Record::Serving(None) => format!("record {env} as stopped"),
            Record::Starting(Some(s)) => format!("record {} as starting in {env}", s.label),
            Record::Starting(None) => format!("forget {env}'s start record"),
            Record::Retiring([]) => format!("forget {env}'s retiring record"),
            Record::Retiring(list) => format!(
                "record {} as retiring in {env}",
                list.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Record::Canary(Some(s)) => format!("record {} as {env}'s canary", s.label),
            Record::Canary(None) => format!("forget {env}'s canary record"),
            Record::Warm(Some(w)) => {
                format!("record {} as kept warm in {env} until {}", w.state.label, crate::clock::rfc3339(w.until))
            }
            Record::Warm(None) => format!("forget {env}'s warm record"),
        }
    }

    /// The record's new text, `None` to remove the file.
    fn text(&self) -> Result<Option<Vec<u8>>> {
        Ok(match self {
            Record::Serving(s) | Record::Starting(s) | Record::Canary(s) => {
                s.map(serde_json::to_vec_pretty).transpose()?
            }
            Record::Retiring([]) => None,
            Record::Retiring(list) => Some(serde_json::to_vec_pretty(list)?),
            Record::Warm(w) => w.map(serde_json::to_vec_pretty).transpose()?,
        })
    }
}

/// One snapshot of an environment's records.
#[derive(Debug, Clone, Default)]
pub(super) struct Records {
    pub serving: Option<EnvState>,
    pub starting: Option<EnvState>,
    pub retiring: Vec<EnvState>,
    pub canary: Option<EnvState>,
    pub warm: Option<Warm>,
}

/// What runs, as the tidy-up plan needs it.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// The environment's nginx master runs.
    pub nginx_up: bool,
    /// The recorded groups whose supervisor still runs.
    pub alive: std::collections::BTreeSet<i32>,
    pub now: crate::clock::Millis,
    /// How long after its window a warm version still running counts as overdue (its own
    /// retirement takes up to the stop grace).
    pub overdue_after_ms: i64,
}

/// Why a tidy-up stops a version (said in its warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Left {
    Starting,
    Retiring,
    WarmOverdue,
}

/// One step of tidying up what a killed run left, in the order it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tidy {
    /// A run was stopped during the canary of `candidate`: nginx sends every request to `to`.
    UndoCanary {
        candidate: String,
        to: String,
    },
    /// nginx is made to point at what is recorded as serving, before any retiring version stops.
    PointAtServing,
    Stop {
        label: String,
        pid: i32,
        left: Left,
    },
    Forget(Slot),
}

/// The tidy-up plan: what to do, in order, with the records a killed run left.
///
/// - A canary: nginx goes back to sending every request to what serves (when both exist), then
///   the canary record is forgotten. Its candidate is stopped as a start that never served.
/// - A start: stopped unless it is what serves (a run killed after recording it as serving),
///   then forgotten.
/// - A warm version past its window and its grace, still running: stopped, then forgotten. A
///   warm record naming what serves, or a group that no longer runs, is forgotten.
/// - Versions retiring: nginx is pointed at what serves first (the switch may not have
///   happened), then each is stopped, except what serves and the warm version still within its
///   window; then the list is forgotten.
pub(super) fn tidy_plan(r: &Records, f: &Facts) -> Vec<Tidy> {
    let mut plan = vec![];
    let serving = r.serving.as_ref().map(|s| s.pid);
    if let Some(c) = &r.canary {
        if let Some(s) = r.serving.as_ref().filter(|_| f.nginx_up) {
            plan.push(Tidy::UndoCanary { candidate: c.label.clone(), to: s.label.clone() });
        }
        plan.push(Tidy::Forget(Slot::Canary));
    }
    if let Some(st) = &r.starting {
        if serving != Some(st.pid) {
            plan.push(Tidy::Stop { label: st.label.clone(), pid: st.pid, left: Left::Starting });
        }
        plan.push(Tidy::Forget(Slot::Starting));
    }
    let mut warm_kept = None;
    if let Some(w) = &r.warm {
        let pid = w.state.pid;
        let alive = f.alive.contains(&pid);
        if serving == Some(pid) || !alive {
            plan.push(Tidy::Forget(Slot::Warm));
        } else if f.now >= w.until + f.overdue_after_ms {
            plan.push(Tidy::Stop { label: w.state.label.clone(), pid, left: Left::WarmOverdue });
            plan.push(Tidy::Forget(Slot::Warm));
        } else if f.now < w.until {
            warm_kept = Some(pid);
        }
    }
    if !r.retiring.is_empty() {
        if r.serving.is_some() {
            plan.push(Tidy::PointAtServing);
        }
        for o in r.retiring.iter().filter(|o| Some(o.pid) != serving && Some(o.pid) != warm_kept) {
            plan.push(Tidy::Stop { label: o.label.clone(), pid: o.pid, left: Left::Retiring });
        }
        plan.push(Tidy::Forget(Slot::Retiring));
    }
    plan
}

impl Local<'_> {
    fn record_file(&self, env: &str, slot: Slot) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join(slot.file()))
    }

    /// Writes (atomically: a temporary file renamed over it) or removes one record, as a step.
    pub(super) fn record(&self, env: &str, r: Record<'_>) -> Result<()> {
        let path = self.record_file(env, r.slot())?;
        self.fx.exec.effect(
            || r.describe(env),
            || {
                match r.text()? {
                    Some(bytes) => {
                        let tmp = path.with_extension("json.tmp");
                        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
                        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
                    }
                    None => match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(anyhow::Error::from(e).context(format!("removing {}", path.display())));
                        }
                        _ => {}
                    },
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    /// One record as it is now (`None`: not written, or forgotten).
    pub(super) fn read_record<T: serde::de::DeserializeOwned>(&self, env: &str, slot: Slot) -> Result<Option<T>> {
        let path = self.record_file(env, slot)?;
        match crate::statedir::read_own(&path) {
            Ok(Some(text)) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("reading {} (delete it if the environment is stopped)", path.display())),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(crate::could_not_act!("{} is {e} (delete it if the environment is stopped)", path.display()))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every record of `env`. A warm record that cannot be read counts as none (see
    /// [`Local::read_warm`]).
    pub(super) fn records(&self, env: &str) -> Result<Records> {
        Ok(Records {
            serving: self.read_record(env, Slot::Serving)?,
            starting: self.read_record(env, Slot::Starting)?,
            retiring: self.read_record(env, Slot::Retiring)?.unwrap_or_default(),
            canary: self.read_record(env, Slot::Canary)?,
            warm: self.read_record(env, Slot::Warm).unwrap_or(None),
        })
    }

    /// What runs, for the recorded groups.
    fn facts(&self, r: &Records, nginx_up: bool) -> Facts {
        let groups = r.serving.iter().chain(&r.starting).chain(&r.retiring).chain(&r.canary);
        let alive = groups
            .chain(r.warm.as_ref().map(|w| &w.state))
            .map(|s| s.pid)
            .filter(|&pid| self.is_supervisor(pid) && self.group_alive(pid))
            .collect();
        Facts {
            nginx_up,
            alive,
            now: crate::clock::now_ms(),
            overdue_after_ms: self.deploy.stop_grace.0.as_millis() as i64 + 1000,
        }
    }

    /// What a killed run left behind the proxy, tidied by [`tidy_plan`].
    pub(super) fn tidy_behind(&self, env: &Environment, nginx: &Nginx<'_>) -> Result<()> {
        let name = env.name.as_str();
        let records = self.records(name)?;
        let plan = tidy_plan(&records, &self.facts(&records, nginx.pid().is_some()));
        let listen = || -> Result<String> { Ok(nginx::listen_of(&env.url.0, self.port_of(env)?)) };
        let recorded = |pid: i32| {
            let all = records.starting.iter().chain(&records.retiring).chain(records.warm.as_ref().map(|w| &w.state));
            all.into_iter().find(|s| s.pid == pid).cloned()
        };
        for step in plan {
            match step {
                Tidy::UndoCanary { candidate, to } => {
                    self.fx.ui.warn(format!(
                        "{name}: a run was stopped during the canary of {candidate}; sending every request to {to} again"
                    ));
                    let s = records.serving.as_ref().expect("planned only with a serving record");
                    let r = nginx.switch(&listen()?, s.port, &s.label)?;
                    nginx.drain(r);
                }
                Tidy::PointAtServing => {
                    let s = records.serving.as_ref().expect("planned only with a serving record");
                    if let Some(r) = self.point_nginx(nginx, &listen()?, s.port, &s.label)? {
                        nginx.drain(r);
                    }
                }
                Tidy::Stop { label, pid, left } => {
                    self.fx.ui.warn(match left {
                        Left::Starting => format!("{name}: stopping {label}, left starting by a run that was stopped"),
                        Left::Retiring => format!("{name}: stopping {label}, left to retire by a run that was stopped"),
                        Left::WarmOverdue => {
                            let until =
                                records.warm.as_ref().map(|w| crate::clock::rfc3339(w.until)).unwrap_or_default();
                            format!("{name}: {label}, kept warm until {until}, still runs; stopping it")
                        }
                    });
                    if let Some(s) = recorded(pid) {
                        self.stop_group(name, &s)?;
                    }
                }
                Tidy::Forget(slot) => self.record(name, forget(slot))?,
            }
        }
        Ok(())
    }
}

/// The write that forgets a record.
fn forget(slot: Slot) -> Record<'static> {
    match slot {
        Slot::Serving => Record::Serving(None),
        Slot::Starting => Record::Starting(None),
        Slot::Retiring => Record::Retiring(&[]),
        Slot::Canary => Record::Canary(None),
        Slot::Warm => Record::Warm(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(label: &str, pid: i32) -> EnvState {
        EnvState { label: label.into(), pid, port: 9000 + pid as u16, started_at: String::new(), dir: None }
    }
    fn warm(label: &str, pid: i32, until: i64) -> Warm {
        Warm { state: v(label, pid), until }
    }
    fn facts(alive: &[i32], now: i64) -> Facts {
        Facts { nginx_up: true, alive: alive.iter().copied().collect(), now, overdue_after_ms: 4_000 }
    }
    fn stop(label: &str, pid: i32, left: Left) -> Tidy {
        Tidy::Stop { label: label.into(), pid, left }
    }

    #[test]
    fn a_killed_runs_records_are_tidied_in_a_plan_that_never_stops_what_serves() {
        use Tidy::*;
        let v1 = || Some(v("v1", 1));
        // (what the records hold, what runs, the plan)
        let rows: Vec<(&str, Records, Facts, Vec<Tidy>)> = vec![
            ("nothing left", Records { serving: v1(), ..Default::default() }, facts(&[1], 0), vec![]),
            (
                "killed while starting v2",
                Records { serving: v1(), starting: Some(v("v2", 2)), ..Default::default() },
                facts(&[1, 2], 0),
                vec![stop("v2", 2, Left::Starting), Forget(Slot::Starting)],
            ),
            (
                "killed after recording v2 as serving, before forgetting its start",
                Records {
                    serving: Some(v("v2", 2)),
                    starting: Some(v("v2", 2)),
                    retiring: vec![v("v1", 1)],
                    ..Default::default()
                },
                facts(&[1, 2], 0),
                vec![Forget(Slot::Starting), PointAtServing, stop("v1", 1, Left::Retiring), Forget(Slot::Retiring)],
            ),
            (
                "killed after recording v1 as retiring, before recording v2 as serving: v1 still serves",
                Records { serving: v1(), starting: Some(v("v2", 2)), retiring: vec![v("v1", 1)], ..Default::default() },
                facts(&[1, 2], 0),
                vec![stop("v2", 2, Left::Starting), Forget(Slot::Starting), PointAtServing, Forget(Slot::Retiring)],
            ),
            (
                "killed during a canary: the share goes back before its candidate stops",
                Records { serving: v1(), starting: Some(v("v2", 2)), canary: Some(v("v2", 2)), ..Default::default() },
                facts(&[1, 2], 0),
                vec![
                    UndoCanary { candidate: "v2".into(), to: "v1".into() },
                    Forget(Slot::Canary),
                    stop("v2", 2, Left::Starting),
                    Forget(Slot::Starting),
                ],
            ),
            (
                "a canary record with nginx down: nothing to undo",
                Records { serving: v1(), canary: Some(v("v2", 2)), ..Default::default() },
                Facts { nginx_up: false, ..facts(&[1], 0) },
                vec![Forget(Slot::Canary)],
            ),
            (
                "the warm previous within its window is kept, even when also left retiring",
                Records {
                    serving: v1(),
                    retiring: vec![v("v0", 3)],
                    warm: Some(warm("v0", 3, 100)),
                    ..Default::default()
                },
                facts(&[1, 3], 50),
                vec![PointAtServing, Forget(Slot::Retiring)],
            ),
            (
                "the warm previous past its window and grace, still running: stopped",
                Records { serving: v1(), warm: Some(warm("v0", 3, 100)), ..Default::default() },
                facts(&[1, 3], 4_100),
                vec![stop("v0", 3, Left::WarmOverdue), Forget(Slot::Warm)],
            ),
            (
                "the warm previous within its grace: left to retire itself, not kept from a retiring stop",
                Records {
                    serving: v1(),
                    retiring: vec![v("v0", 3)],
                    warm: Some(warm("v0", 3, 100)),
                    ..Default::default()
                },
                facts(&[1, 3], 200),
                vec![PointAtServing, stop("v0", 3, Left::Retiring), Forget(Slot::Retiring)],
            ),
            (
                "a warm record naming what serves (switched back, killed before forgetting), or a gone group",
                Records { serving: Some(v("v0", 3)), warm: Some(warm("v0", 3, 100)), ..Default::default() },
                facts(&[3], 0),
                vec![Forget(Slot::Warm)],
            ),
            (
                "a warm record whose group is gone",
                Records { serving: v1(), warm: Some(warm("v0", 3, 100)), ..Default::default() },
                facts(&[1], 0),
                vec![Forget(Slot::Warm)],
            ),
            (
                "nothing recorded as serving: retiring versions are stopped, nginx is not pointed anywhere",
                Records { retiring: vec![v("v1", 1), v("v0", 3)], ..Default::default() },
                facts(&[1, 3], 0),
                vec![stop("v1", 1, Left::Retiring), stop("v0", 3, Left::Retiring), Forget(Slot::Retiring)],
            ),
        ];
        for (case, records, facts, want) in rows {
            let plan = tidy_plan(&records, &facts);
            assert_eq!(plan, want, "{case}");
            // Whatever the records, what serves is never stopped.
            let serving = records.serving.as_ref().map(|s| s.pid);
            assert!(!plan.iter().any(|t| matches!(t, Tidy::Stop { pid, .. } if Some(*pid) == serving)), "{case}");
        }
    }

    #[test]
    fn each_record_is_said_as_its_step_and_forgetting_removes_its_file() {
        let (v2, v1) = (v("v2", 2), v("v1", 1));
        let w = warm("v1", 1, 0);
        let rows: [(Record<'_>, &str, bool); 10] = [
            (Record::Serving(Some(&v2)), "record v2 as serving production", true),
            (Record::Serving(None), "record production as stopped", false),
            (Record::Starting(Some(&v2)), "record v2 as starting in production", true),
            (Record::Starting(None), "forget production's start record", false),
            (Record::Retiring(std::slice::from_ref(&v1)), "record v1 as retiring in production", true),
            (Record::Retiring(&[]), "forget production's retiring record", false),
            (Record::Canary(Some(&v2)), "record v2 as production's canary", true),
            (Record::Canary(None), "forget production's canary record", false),
            (Record::Warm(Some(&w)), "record v1 as kept warm in production until 1970-01-01T00:00:00.000Z", true),
            (Record::Warm(None), "forget production's warm record", false),
        ];
        for (r, said, written) in rows {
            assert_eq!(r.describe("production"), said);
            assert_eq!(r.text().expect("text").is_some(), written, "{said}");
            assert_eq!(forget(r.slot()).text().expect("text"), None, "{said}");
        }
    }
}
