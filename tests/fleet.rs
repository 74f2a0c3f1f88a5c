//! A fleet on this machine: 20 oomscope agents, each a simulated node with
//! its own `host.name`, state directory, ports, log directory and memory
//! cgroup subtree (`/oomscope-fleet/node-NN`, which its `oom` and `memory`
//! receivers are filtered to), send over OTLP/gRPC with a persistent queue to
//! one gateway (rotel), which forwards to a backend (oomscope writing a file).
//!
//! Contained OOM kills and OOM log lines on several nodes arrive exactly
//! once, each from its own node. Then the gateway is killed; during the
//! outage more kills and lines happen, every agent tries and fails to send,
//! one agent is killed with SIGKILL and restarted (its queue is on disk);
//! the gateway comes back on the same port after the outage, and still every
//! record arrives exactly once, from its node.
//!
//! Needs root (eBPF, /dev/kmsg, memory cgroups) and the peers' rotel
//! (`scripts/setup.sh --with-peers`, as every rotel test).

mod common;

use std::time::{Duration, Instant};

use common::fleet::{
    foreign_cgroup_points, node_name, wait_until, AgentSettings, Backend, Expected, FleetCgroups,
    Node, Tally,
};
use common::oom::oom_test_slot_blocking;
use common::rotel::Rotel;
use common::{is_root, skip};

const NODES: usize = 20;
/// Generous: 20 agents share two cores with whatever else runs; only there
/// so that a broken fleet fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(300);
const LINES_PER_NODE: usize = 5;

/// Nodes with kills and with log lines before the outage, and during it.
const KILLS_BEFORE: &[usize] = &[1, 4, 7, 10, 13];
const LINES_BEFORE: &[usize] = &[2, 5, 8, 11, 14, 17, 20];
const KILLS_DURING: &[usize] = &[3, 9, 16];
const LINES_DURING: &[usize] = &[5, 6, 12, 18];
/// The node whose agent is killed with SIGKILL during the outage (it has
/// lines, and no kill, during the outage: see below).
const KILLED_AGENT: usize = 5;

/// How long the gateway stays down. This is the scenario (issue 11: "the
/// gateway going down for a minute"), not a pass criterion: the test holds
/// the gateway down this long after every agent has tried and failed, so the
/// agents' queues must hold across a realistic outage (retries backing off to
/// their maximum, connections re-dialled many times). Override with
/// `OOMSCOPE_FLEET_OUTAGE_SECS`.
fn outage() -> Duration {
    let secs = std::env::var("OOMSCOPE_FLEET_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

fn add_lines(nodes: &mut [Node], expected: &mut Expected, which: &[usize], phase: usize) {
    for &i in which {
        let lines: Vec<String> = (0..LINES_PER_NODE)
            .map(|seq| Expected::line(i, phase, seq))
            .collect();
        nodes[i - 1].append_lines(&lines);
        for l in lines {
            expected.lines.insert(l, i);
        }
    }
}

fn add_kills(cgroups: &FleetCgroups, expected: &mut Expected, which: &[usize], phase: usize) {
    // The kernel prints at most 10 OOM report headers per 5 s machine-wide:
    // kills take turns with other tests, and a turn has fewer than 10.
    let _slot = oom_test_slot_blocking();
    for &i in which {
        let kill = cgroups.oom_kill(i, &format!("kill-{phase}"));
        expected.kills.insert(kill.pid, kill);
    }
}

/// Waits until every expected record is at the backend; panics with what is
/// missing.
fn wait_for_all(backend: &Backend, expected: &Expected, nodes: &[Node], what: &str) {
    wait_until(what, TIMEOUT, || {
        let tally = Tally::of(&backend.received(), expected, nodes);
        if tally.complete() {
            return Ok(());
        }
        let missing: Vec<String> = tally
            .lines
            .iter()
            .filter(|(_, &n)| n == 0)
            .map(|(l, _)| l.clone())
            .chain(
                tally
                    .kills
                    .iter()
                    .filter(|(_, &n)| n == 0)
                    .map(|(p, _)| format!("kill of pid {p}")),
            )
            .collect();
        Err(format!("missing {missing:?}"))
    });
}

fn assert_exactly_once(tally: &Tally, nodes: &[Node], when: &str) {
    let not_once = tally.not_once();
    assert!(
        not_once.is_empty() && tally.wrong.is_empty(),
        "{when}: records not exactly once: {not_once:#?}\nrecords from the wrong node or unexpected: {:#?}\n\
         node-{KILLED_AGENT:02}'s agent said:\n{}",
        tally.wrong,
        nodes[KILLED_AGENT - 1].output()
    );
}

#[test]
fn fleet_of_agents_through_a_gateway_loses_and_duplicates_nothing() {
    const TEST: &str = "fleet_of_agents_through_a_gateway_loses_and_duplicates_nothing";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let Some(cgroups) = FleetCgroups::create(NODES).expect("create the fleet's cgroups") else {
        return skip(TEST, "no memory cgroup controller to contain OOM kills");
    };
    let mut backend = Backend::start(TIMEOUT);
    let mut gateway = Rotel::start_gateway(backend.grpc_addr());
    let settings = AgentSettings {
        gateway: gateway.grpc_addr(),
        memory_interval: "10s",
    };
    let mut nodes: Vec<Node> = (1..=NODES).map(|i| Node::new(i, &settings)).collect();
    for n in &mut nodes {
        n.start();
    }
    for n in &mut nodes {
        n.wait_healthy(TIMEOUT);
    }

    // Before the outage: everything arrives once, from its node.
    let mut expected = Expected::default();
    add_lines(&mut nodes, &mut expected, LINES_BEFORE, 1);
    add_kills(&cgroups, &mut expected, KILLS_BEFORE, 1);
    wait_for_all(&backend, &expected, &nodes, "records before the outage");
    assert_exactly_once(
        &Tally::of(&backend.received(), &expected, &nodes),
        &nodes,
        "before the outage",
    );

    // The gateway crashes. (Every log record is at the backend by now, so
    // rotel's in-memory batches hold none.)
    let failures_before: Vec<usize> = nodes.iter().map(Node::export_failures).collect();
    gateway.kill();
    let outage_started = Instant::now();
    add_lines(&mut nodes, &mut expected, LINES_DURING, 2);
    add_kills(&cgroups, &mut expected, KILLS_DURING, 2);

    // Every agent has tried to send (each has memory samples every 10 s)
    // and failed.
    wait_until("every agent tried and failed to send", TIMEOUT, || {
        let not_yet: Vec<String> = nodes
            .iter_mut()
            .zip(&failures_before)
            .filter_map(|(n, &before)| {
                n.assert_running();
                (n.export_failures() <= before).then(|| n.name.clone())
            })
            .collect();
        if not_yet.is_empty() {
            Ok(())
        } else {
            Err(format!("no failed export yet on {not_yet:?}"))
        }
    });

    // kill -9 one agent once its lines are acknowledged: its filelog offset
    // is stored only when the records are in the persistent queue, so after
    // the restart they can come only from the queue on disk. (A kill is not
    // checkpointed by the oom receiver, so this node has none during the
    // outage: a kill -9 before it reached the queue would lose it by design.)
    let killed = &mut nodes[KILLED_AGENT - 1];
    let log_len = std::fs::metadata(killed.log_file())
        .expect("the node's log file")
        .len();
    wait_until(
        &format!("{}'s lines acknowledged by its queue", killed.name),
        TIMEOUT,
        || match killed.stored_log_offset() {
            Some(offset) if offset >= log_len => Ok(()),
            other => Err(format!("offset {other:?} of {log_len}")),
        },
    );
    killed.kill9();
    killed.start();
    killed.wait_healthy(TIMEOUT);
    wait_until(
        &format!("{}'s restarted agent tried its queue", killed.name),
        TIMEOUT,
        || {
            killed.assert_running();
            if killed.export_failures() > 0 {
                Ok(())
            } else {
                Err("no failed export yet".into())
            }
        },
    );

    // Hold the outage for its duration, the agents running all along.
    let outage = outage();
    while outage_started.elapsed() < outage {
        for n in &mut nodes {
            n.assert_running();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !gateway.is_running(),
        "the gateway is down during the outage"
    );
    gateway.restart();

    // After the outage: everything arrives, from its node.
    wait_for_all(&backend, &expected, &nodes, "records after the outage");
    wait_until("every agent's sending queue is empty", TIMEOUT, || {
        let busy: Vec<String> = nodes
            .iter()
            .filter(|n| n.queue_size() != Some(0.0))
            .map(|n| format!("{}: {:?}", n.name, n.queue_size()))
            .collect();
        if busy.is_empty() {
            Ok(())
        } else {
            Err(format!("queues not empty: {busy:?}"))
        }
    });

    // Stop everything cleanly (each flushes what it holds), then count: a
    // duplicate would have arrived by now.
    for n in &mut nodes {
        n.stop(TIMEOUT);
    }
    gateway.stop();
    let arrived = backend.stop(TIMEOUT);
    let tally = Tally::of(&arrived, &expected, &nodes);
    assert!(tally.complete(), "lost records: {:#?}", tally.not_once());
    assert_exactly_once(&tally, &nodes, "after the outage");
    assert_eq!(
        expected.kills.len(),
        KILLS_BEFORE.len() + KILLS_DURING.len()
    );

    // Metrics are attributed too: each node reports its own steady cgroup,
    // and no node reports a cgroup outside its subtree.
    let foreign = foreign_cgroup_points(&arrived);
    assert!(
        foreign.is_empty(),
        "metric points from outside their node's subtree: {foreign:#?}"
    );
    for i in 1..=NODES {
        let steady = cgroups.steady_cgroup(i);
        let reported = arrived.points.iter().any(|p| {
            p.host.as_deref() == Some(node_name(i).as_str())
                && common::otlp::json_attr(&p.point["attributes"], "oomscope.cgroup.path")
                    .and_then(|v| v["stringValue"].as_str())
                    == Some(steady.as_str())
        });
        assert!(
            reported,
            "{} never reported its cgroup {steady}",
            node_name(i)
        );
    }
}
