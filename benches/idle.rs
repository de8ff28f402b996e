//! `cargo bench --bench idle`: what the dashboard costs when nobody watches. Runs `valor run`
//! (fake Bot API and Anthropic API, nothing said) with `[health] dashboard` on and off, in
//! turns, and measures each run's resident memory and CPU time over an idle window after a
//! warm-up. Target: on within ±5% of off. `VALOR_IDLE_SECS` (default 60) sets the window,
//! `VALOR_IDLE_ROUNDS` (default 2) the runs of each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

/// Seconds to let start-up settle (the model load, the first samples) before measuring.
const WARM_UP: Duration = Duration::from_secs(15);

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

struct Idle {
    rss_mib: f64,
    cpu_percent: f64,
}

fn measure(
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
    dashboard: bool,
    window: Duration,
) -> Idle {
    let dir = tempfile::tempdir().unwrap();
    let on = if dashboard { "true" } else { "false" };
    let mut child = common::start_with(
        dir.path(),
        telegram,
        anthropic,
        1,
        &[("VALOR__HEALTH__DASHBOARD", on)],
    );
    let pid = common::valor_pid(&child);
    std::thread::sleep(WARM_UP);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let ticks = cpu_ticks(pid) - before;
    let rss_kib = common::rss_kib(pid);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    // Linux counts CPU time in 100 ticks a second.
    Idle {
        rss_mib: rss_kib as f64 / 1024.0,
        cpu_percent: ticks as f64 / window.as_secs_f64(),
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|_| Reply::text("answer")).await,
            FakeTelegram::start().await,
        )
    });
    let window = Duration::from_secs(common::env_or("VALOR_IDLE_SECS", 60) as u64);
    let rounds = common::env_or("VALOR_IDLE_ROUNDS", 2);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for dashboard in [true, false] {
            let idle = measure(&telegram, &anthropic, dashboard, window);
            println!(
                "idle: round {round}, dashboard {}: RSS {:.1} MiB, CPU {:.2}%",
                if dashboard { "on " } else { "off" },
                idle.rss_mib,
                idle.cpu_percent
            );
            if dashboard { &mut on } else { &mut off }.push(idle);
        }
    }
    let mean = |v: &[Idle], f: fn(&Idle) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (rss_on, rss_off) = (mean(&on, |i| i.rss_mib), mean(&off, |i| i.rss_mib));
    let (cpu_on, cpu_off) = (mean(&on, |i| i.cpu_percent), mean(&off, |i| i.cpu_percent));
    println!(
        "idle: dashboard on vs off over {rounds} runs of {}s each: RSS {rss_on:.1} vs {rss_off:.1} MiB ({:+.1}%), CPU {cpu_on:.2}% vs {cpu_off:.2}% ({:+.1}%) (target ±5%)",
        window.as_secs(),
        (rss_on - rss_off) / rss_off * 100.0,
        (cpu_on - cpu_off) / cpu_off.max(f64::EPSILON) * 100.0
    );
}
