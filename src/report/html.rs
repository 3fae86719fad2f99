//! The report as one self-contained page: inline CSS and SVG, no script, no request to anything
//! (it opens from a Jenkins artifact or a file). Well-formed XHTML, so a test reads it back with
//! an XML parser; every figure carries `data-key` (what it is) and `data-value` (the number the
//! `--json` document has), so what the page says is checked against the ledger.

use super::Report;
use crate::clock::human;

/// `&`, `<`, `>`, `"` and `'` escaped: text and attribute values alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 refuses most control characters: a hostile commit message cannot break
            // the page.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A figure: its text, and the number behind it.
fn figure(key: &str, value: &str, text: &str) -> String {
    format!("<span class=\"figure\" data-key=\"{key}\" data-value=\"{}\">{}</span>", esc(value), esc(text))
}

fn ms_text(ms: Option<i64>) -> (String, String) {
    match ms {
        Some(v) => (v.to_string(), human(v)),
        None => (String::new(), "—".into()),
    }
}

pub fn render(r: &Report, app: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    h.push_str(&format!("<title>safedeploy report — {}</title>\n", esc(app)));
    h.push_str(STYLE);
    h.push_str("</head>\n<body>\n");
    h.push_str(&format!(
        "<header><h1>{}: deployments, incidents and the SLA budget</h1><p>From {} to {} (generated {}); production: {}.</p></header>\n",
        esc(app),
        esc(&r.from),
        esc(&r.to),
        esc(&r.generated_at),
        esc(&r.production.join(", "))
    ));
    dora(&mut h, r);
    budget(&mut h, r);
    stopped(&mut h, r);
    shadow(&mut h, r);
    incidents(&mut h, r);
    timeline(&mut h, r);
    h.push_str("</body>\n</html>\n");
    h
}

fn dora(h: &mut String, r: &Report) {
    let d = &r.dora;
    let (lead_v, lead_t) = ms_text(d.lead_time_ms);
    let (ttr_v, ttr_t) = ms_text(d.time_to_restore_ms);
    let (cfr_v, cfr_t) = match d.change_failure_rate {
        Some(x) => (format!("{x:.4}"), format!("{:.1} % ({} of {})", x * 100.0, d.failed_changes, d.deployments)),
        None => (String::new(), "—".into()),
    };
    h.push_str("<section id=\"dora\"><h2>The four keys</h2><dl class=\"keys\">\n");
    let rows = [
        (
            "Deployment frequency",
            figure(
                "dora.per_week",
                &format!("{:.2}", d.per_week),
                &if d.per_week < 1.0 {
                    format!("{:.2} a week", d.per_week)
                } else {
                    format!("{:.1} a week", d.per_week)
                },
            ),
            format!("{} to production in {:.1} days", d.deployments, d.days),
        ),
        ("Lead time for changes", figure("dora.lead_time_ms", &lead_v, &lead_t), "median, commit to production".into()),
        (
            "Change failure rate",
            figure("dora.change_failure_rate", &cfr_v, &cfr_t),
            "production deployments that caused an incident".into(),
        ),
        (
            "Time to restore",
            figure("dora.time_to_restore_ms", &ttr_v, &ttr_t),
            "median, first failing verdict to served again".into(),
        ),
    ];
    for (name, value, note) in rows {
        h.push_str(&format!("<div><dt>{name}</dt><dd>{value}<small>{}</small></dd></div>\n", esc(&note)));
    }
    h.push_str("</dl></section>\n");
}

fn budget(h: &mut String, r: &Report) {
    let b = &r.budget;
    h.push_str("<section id=\"budget\"><h2>SLA budget</h2>\n<p>");
    h.push_str(&figure("budget.left_ms", &b.left_ms.to_string(), &format!("{} left", human(b.left_ms))));
    h.push_str(" of ");
    h.push_str(&figure("budget.allowed_ms", &b.allowed_ms.to_string(), &human(b.allowed_ms)));
    h.push_str("; ");
    h.push_str(&figure("budget.used_ms", &b.used_ms.to_string(), &format!("{} used", human(b.used_ms))));
    h.push_str(&format!(" since {}.</p>\n", esc(&b.from)));
    // The burn: used budget over the period, against the allowance.
    let (w, ht, pad) = (720.0_f64, 200.0_f64, 30.0_f64);
    let top = (b.allowed_ms.max(b.used_ms).max(1)) as f64;
    let span = b.span_ms.max(1) as f64;
    let x = |t: i64| pad + (t.max(0) as f64 / span).min(1.0) * (w - 2.0 * pad);
    let y = |u: i64| ht - pad - (u as f64 / top) * (ht - 2.0 * pad);
    let mut pts = vec![format!("{:.1},{:.1}", x(0), y(0))];
    let mut last = 0;
    for (t, used) in &b.points {
        pts.push(format!("{:.1},{:.1}", x(*t), y(last)));
        pts.push(format!("{:.1},{:.1}", x(*t), y(*used)));
        last = *used;
    }
    pts.push(format!("{:.1},{:.1}", x(b.span_ms), y(last)));
    h.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"burn\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"SLA budget used over the period\">\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" fill=\"#fff\"/>\n\
         <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"allowed\"/>\n\
         <text x=\"{pad}\" y=\"{:.1}\" class=\"label\">allowed: {}</text>\n\
         <polyline points=\"{}\" class=\"used\"/>\n\
         <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"axis\"/>\n\
         <text x=\"{pad}\" y=\"{:.1}\" class=\"label\">{}</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">now</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"label used-label\" text-anchor=\"end\">used: {}</text>\n\
         </svg>\n",
        y(b.allowed_ms),
        w - pad,
        y(b.allowed_ms),
        y(b.allowed_ms) - 6.0,
        esc(&human(b.allowed_ms)),
        pts.join(" "),
        ht - pad,
        w - pad,
        ht - pad,
        ht - 10.0,
        esc(&b.from[..10.min(b.from.len())]),
        w - pad,
        ht - 10.0,
        w - pad,
        (y(last) - 6.0).max(12.0),
        esc(&human(b.used_ms)),
    ));
    h.push_str("</section>\n");
}

fn stopped(h: &mut String, r: &Report) {
    let s = &r.stopped;
    h.push_str("<section id=\"stopped\"><h2>Bad versions stopped, by layer</h2><table><thead><tr><th>layer</th><th>stopped</th></tr></thead><tbody>\n");
    for (key, name, n) in [
        ("gate", "the gate (commits)", s.gate),
        ("staging_smoke", "staging smoke check", s.staging_smoke),
        ("pre_traffic", "before traffic", s.pre_traffic),
        ("canary", "canary", s.canary),
        ("production_smoke", "production smoke check, rolled back", s.production_smoke),
        ("alert", "Datadog alert, rolled back", s.alert),
        ("by_hand", "rolled back by hand, on a person's word", s.by_hand),
    ] {
        h.push_str(&format!(
            "<tr><td>{name}</td><td>{}</td></tr>\n",
            figure(&format!("stopped.{key}"), &n.to_string(), &n.to_string())
        ));
    }
    h.push_str("</tbody></table></section>\n");
}

/// Metrics in shadow mode: evidence a team weighs before enforcing them.
fn shadow(h: &mut String, r: &Report) {
    if r.shadow_metrics.is_empty() {
        return;
    }
    h.push_str("<section id=\"shadow\"><h2>Metrics in shadow mode</h2><table><thead><tr><th>metric</th><th>versions judged</th><th>would have failed</th><th>of which proved healthy</th></tr></thead><tbody>\n");
    for m in &r.shadow_metrics {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&m.metric),
            m.versions,
            m.would_fail,
            m.would_fail_healthy
        ));
    }
    h.push_str("</tbody></table></section>\n");
}

fn incidents(h: &mut String, r: &Report) {
    h.push_str(&format!(
        "<section id=\"incidents\"><h2>Incidents ({})</h2>\n",
        figure("incidents.count", &r.incidents.len().to_string(), &r.incidents.len().to_string())
    ));
    if r.incidents.is_empty() {
        h.push_str("<p>None in the period.</p></section>\n");
        return;
    }
    h.push_str("<table><thead><tr><th>environment</th><th>bad version</th><th>took traffic</th><th>detected</th><th>served again</th><th>restored</th><th>exposure charged</th><th>reason</th></tr></thead><tbody>\n");
    for i in &r.incidents {
        let share = if i.share_percent < 100 { format!(" ({} % of users)", i.share_percent) } else { String::new() };
        h.push_str(&format!(
            "<tr class=\"incident\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>\n",
            esc(&i.env),
            esc(i.bad_version.as_deref().unwrap_or("-")),
            esc(i.took_traffic_at.as_deref().unwrap_or("-")),
            esc(&i.detected_at),
            esc(i.restored_at.as_deref().unwrap_or("open")),
            esc(i.restored_version.as_deref().unwrap_or("-")),
            figure("incident.exposure_ms", &i.exposure_ms.to_string(), &human(i.exposure_ms)),
            esc(&share),
            esc(i.reason.as_deref().unwrap_or(""))
        ));
    }
    h.push_str("</tbody></table></section>\n");
}

fn timeline(h: &mut String, r: &Report) {
    h.push_str(&format!(
        "<section id=\"timeline\"><h2>Deployments ({})</h2>\n",
        figure("deployments.count", &r.deployment_count.to_string(), &r.deployment_count.to_string())
    ));
    if r.deployment_count > r.deployments.len() {
        h.push_str(&format!(
            "<p>The newest {} are listed; every figure above counts them all.</p>\n",
            r.deployments.len()
        ));
    }
    h.push_str("<table><thead><tr><th>when</th><th>environment</th><th>version</th><th>how</th><th>who</th><th>commit</th><th>outcome</th></tr></thead><tbody>\n");
    for d in &r.deployments {
        h.push_str(&format!(
            "<tr class=\"deployment {}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>\n",
            esc(&d.outcome),
            esc(&d.at),
            esc(&d.env),
            esc(&d.version),
            esc(&d.action),
            esc(d.actor.as_deref().unwrap_or("-")),
            esc(d.commit.as_deref().unwrap_or("-")),
            esc(&d.outcome)
        ));
    }
    h.push_str("</tbody></table></section>\n");
}

const STYLE: &str = "<style>\n\
body { font: 15px/1.45 system-ui, sans-serif; color: #1b1f24; margin: 2rem auto; max-width: 64rem; padding: 0 1rem; }\n\
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }\n\
.keys { display: grid; grid-template-columns: repeat(4, 1fr); gap: .8rem; }\n\
.keys div { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem; }\n\
.keys dt { font-size: .85rem; color: #57606a; } .keys dd { margin: 0; font-size: 1.4rem; font-weight: 600; }\n\
.keys small { display: block; font-size: .75rem; font-weight: 400; color: #57606a; }\n\
table { border-collapse: collapse; width: 100%; font-size: .85rem; }\n\
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }\n\
tr.failed td, tr.abandoned td { color: #a40e26; }\n\
svg.burn .used { fill: none; stroke: #cf222e; stroke-width: 2; } svg.burn .allowed { stroke: #57606a; stroke-dasharray: 4 3; }\n\
svg.burn .axis { stroke: #8c959f; } svg.burn .label { font-size: 11px; fill: #57606a; }\n\
@media print { body { margin: 0; max-width: none; font-size: 11px; } section { break-inside: avoid; } .keys { grid-template-columns: repeat(2, 1fr); } }\n\
</style>\n";
