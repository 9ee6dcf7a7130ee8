//! The tables `make bench` prints.

use super::*;

pub(crate) fn print_detail(
    phase: &str,
    counts: &RequestCounts,
    records: &[testkit::RequestRecord],
) {
    let mut rows: Vec<(String, u64)> = counts
        .iter()
        .filter(|(k, _)| is_operator(&k.agent))
        .map(|(k, c)| {
            let agent = k.agent.split('/').next().unwrap_or_default();
            (
                format!("{agent} {} {}", k.verb.as_str(), k.resource_path()),
                c,
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    eprintln!("-- requests during {phase}:");
    for (key, count) in rows {
        eprintln!("{count:>8}  {key}");
    }
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| is_operator(&r.key.agent) && r.code >= 400)
    {
        let agent = r.key.agent.split('/').next().unwrap_or_default();
        let key = format!(
            "{agent} {} {} -> {}",
            r.key.verb.as_str(),
            r.key.resource_path(),
            r.code
        );
        *failed.entry(key).or_default() += 1;
    }
    if !failed.is_empty() {
        eprintln!("-- failed requests during {phase} (included above):");
        for (key, count) in failed {
            eprintln!("{count:>8}  {key}");
        }
    }
}

pub(crate) fn per_verb(counts: &RequestCounts, n: usize) -> BTreeMap<String, f64> {
    let mut by_verb = BTreeMap::new();
    for (key, count) in counts.iter() {
        if is_operator(&key.agent) {
            *by_verb.entry(key.verb.as_str().to_string()).or_insert(0.0) += count as f64;
        }
    }
    for v in by_verb.values_mut() {
        *v /= n as f64;
    }
    by_verb
}

pub(crate) fn print_table(results: &[RunResult], args: &Args) {
    println!();
    println!("## Provisioning (pods Ready at once)");
    println!(
        "| N | time to all Ready (s) | Pgpools/s | operators quiet after (s) | API requests per Pgpool (by verb) | total |"
    );
    println!("|---:|---:|---:|---:|---|---:|");
    for r in results {
        let verbs: Vec<String> = r
            .requests_per_pgpool
            .iter()
            .map(|(v, c)| format!("{v} {c:.1}"))
            .collect();
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {} | {:.1} |",
            r.n,
            r.provision_secs,
            r.n as f64 / r.provision_secs,
            r.quiet_secs,
            verbs.join(", "),
            r.requests_per_pgpool.values().sum::<f64>()
        );
    }
    println!();
    println!("## CPU time from creation until the operators are quiet (s)");
    let header: Vec<&str> = results
        .first()
        .map(|r| r.cpu_secs.iter().map(|(p, _)| *p).collect())
        .unwrap_or_default();
    println!("| N | {} |", header.join(" | "));
    println!("|---:|{}", "---:|".repeat(header.len()));
    for r in results {
        let cells: Vec<String> = r.cpu_secs.iter().map(|(_, c)| format!("{c:.2}")).collect();
        println!("| {} | {} |", r.n, cells.join(" | "));
    }
    println!();
    println!(
        "## Steady state ({} s window, nothing changing, provisioner resync every {} s)",
        args.steady_seconds, args.resync_seconds
    );
    println!(
        "| N | operator requests/min | writes in window | reconciles in window (Pgpool / PetSet) |"
    );
    println!("|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {:.1} | {} | {:.0} / {:.0} |",
            r.n, r.steady_per_minute, r.steady_writes, r.steady_reconciles.0, r.steady_reconciles.1
        );
    }
    println!();
    println!("## UpdateVersion 4.5.3 -> 4.6.0, no API latency (pods Ready at once)");
    print_update_header(true);
    for r in results {
        print_update_rows(Some(r.n), &r.updates);
    }
    println!();
    println!("## Peak RSS (MiB): whole process (VmHWM), and its anonymous part (heap, stacks)");
    println!("| N | {PROVISIONER} | anon | {OPS_MANAGER} | anon |");
    println!("|---:|---:|---:|---:|---:|");
    let mib =
        |m: &BTreeMap<&'static str, u64>, k: &str| m.get(k).copied().unwrap_or(0) as f64 / 1024.0;
    for r in results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.n,
            mib(&r.rss_kib, PROVISIONER),
            mib(&r.anon_kib, PROVISIONER),
            mib(&r.rss_kib, OPS_MANAGER),
            mib(&r.anon_kib, OPS_MANAGER),
        );
    }
}

pub(crate) fn print_latency_table(updates: &[UpdateResult], latency: Latency) {
    println!();
    println!(
        "## UpdateVersion 4.5.3 -> 4.6.0 under the latency model (reads {} ms, writes {} ms, \
         watch events {} ms; pods Ready at once, no other Pgpools)",
        latency.read.as_millis(),
        latency.write.as_millis(),
        latency.watch_event.as_millis()
    );
    print_update_header(false);
    print_update_rows(None, updates);
}

pub(crate) fn print_update_header(with_n: bool) {
    let n = if with_n { "| N " } else { "" };
    println!(
        "{n}| replicas | wall time (s) | wall / pod (s) | before 1st eviction (s) | \
         per pod: Ready -> next eviction (s) | last Ready -> Successful (s) | \
         ops-manager writes | writes per pod |"
    );
    println!(
        "{}|---:|---:|---:|---:|---:|---:|---:|---:|",
        if with_n { "|---:" } else { "" }
    );
}

/// Rows of one run. Writes per pod: what one more pod adds, `(writes(r) - writes(1)) / (r - 1)`
/// against the run's 1-replica update.
pub(crate) fn print_update_rows(n: Option<usize>, updates: &[UpdateResult]) {
    let single = updates
        .iter()
        .find(|u| u.replicas == 1)
        .map(|u| u.ops_writes);
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for u in updates {
        let per_pod = match single {
            Some(w1) if u.replicas > 1 => format!(
                "{:.1}",
                (u.ops_writes as f64 - w1 as f64) / f64::from(u.replicas - 1)
            ),
            _ => "-".to_string(),
        };
        println!(
            "{}| {} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
            n.map(|n| format!("| {n} ")).unwrap_or_default(),
            u.replicas,
            u.wall_secs,
            u.wall_secs / f64::from(u.replicas),
            opt(u.before_first_eviction),
            opt(u.ready_to_next_eviction),
            opt(u.last_ready_to_done),
            u.ops_writes,
            per_pod
        );
    }
}
